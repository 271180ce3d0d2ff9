package inbox

import (
	"reflect"
	"strings"
	"testing"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/sqlident"
)

// Every statement is built for every dialect (the PostgreSQL-only ones for PostgreSQL), and
// PostgreSQL's have no ? placeholder left.
func TestQueriesBuilt(t *testing.T) {
	table, err := sqlident.Parse("shop.inbox")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []outbox.Dialect{outbox.Postgres, outbox.MySQL, outbox.SQLite} {
		q := reflect.ValueOf(buildQueries(d, table))
		for i := range q.NumField() {
			name, v := q.Type().Field(i).Name, q.Field(i).String()
			pgOnly := strings.HasSuffix(name, "PG") || strings.HasSuffix(name, "PGClear")
			switch {
			case pgOnly && d != outbox.Postgres:
				if v != "" {
					t.Errorf("%s: %s is PostgreSQL's, built for %s", d, name, d)
				}
			case v == "":
				t.Errorf("%s: %s is empty", d, name)
			case d == outbox.Postgres && strings.Contains(v, "?"):
				t.Errorf("%s: %s keeps a ? placeholder: %s", d, name, v)
			}
		}
	}
}
