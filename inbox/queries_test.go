package inbox

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/sqlident"
)

// Every statement is built for every dialect (the PostgreSQL-only ones for PostgreSQL, the
// steps PostgreSQL does in one statement for the others), and PostgreSQL's have no ?
// placeholder left.
func TestQueriesBuilt(t *testing.T) {
	table, err := sqlident.Parse("shop.inbox")
	if err != nil {
		t.Fatal(err)
	}
	onlyFor := map[string][]outbox.Dialect{
		"foldKeysHead": {outbox.MySQL, outbox.SQLite},
		"foldKeysTail": {outbox.MySQL, outbox.SQLite},
		"takeExpired":  {outbox.MySQL, outbox.SQLite},
		"deleteIDs":    {outbox.MySQL},
	}
	for _, d := range []outbox.Dialect{outbox.Postgres, outbox.MySQL, outbox.SQLite} {
		q := reflect.ValueOf(buildQueries(d, table))
		for i := range q.NumField() {
			name, v := q.Type().Field(i).Name, q.Field(i).String()
			dialects, limited := onlyFor[name]
			if strings.HasSuffix(name, "PG") || strings.HasSuffix(name, "PGClear") {
				dialects, limited = []outbox.Dialect{outbox.Postgres}, true
			}
			switch {
			case limited && !slices.Contains(dialects, d):
				if v != "" {
					t.Errorf("%s: %s is for %v, built for %s", d, name, dialects, d)
				}
			case v == "":
				t.Errorf("%s: %s is empty", d, name)
			case d == outbox.Postgres && strings.Contains(v, "?"):
				t.Errorf("%s: %s keeps a ? placeholder: %s", d, name, v)
			}
		}
	}
}
