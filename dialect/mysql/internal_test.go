package mysql

import (
	"slices"
	"testing"

	"github.com/outboxgo/outbox/internal/migrate"
	"github.com/outboxgo/outbox/internal/sqlident"
)

func TestStatements(t *testing.T) {
	t.Parallel()
	got := statements(`-- a comment; with a semicolon
CREATE TABLE a (x TEXT DEFAULT 'it''s; here', y TEXT DEFAULT "q;\"", ` + "`we;ird` INT" + `);
# another comment;
/* block; comment */ INSERT INTO a VALUES ('\';')  ;
--
;;
DROP TABLE a`)
	want := []string{
		"CREATE TABLE a (x TEXT DEFAULT 'it''s; here', y TEXT DEFAULT \"q;\\\"\", `we;ird` INT)",
		`INSERT INTO a VALUES ('\';')`,
		"DROP TABLE a",
	}
	if !slices.Equal(got, want) {
		t.Errorf("statements =\n%q\nwant\n%q", got, want)
	}
}

// The embedded migrations render and split into the statements they hold.
func TestMigrationsRender(t *testing.T) {
	t.Parallel()
	tb, err := sqlident.Parse("shop.events")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := migrate.LoadBacktick(migrationFS, "migrations", migrate.BacktickNamesFor(tb))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no migrations")
	}
	if n := len(statements(ms[0].Up)); n != 3 {
		t.Errorf("migration 1 up has %d statements, want 3", n)
	}
	if n := len(statements(ms[0].Down)); n != 3 {
		t.Errorf("migration 1 down has %d statements, want 3", n)
	}
}

func TestUnsupportedServer(t *testing.T) {
	t.Parallel()
	for version, ok := range map[string]bool{
		"10.11.19-MariaDB-0+deb12u1": true,
		"10.6.0-MariaDB":             true,
		"11.4.2-MariaDB-log":         true,
		"10.5.23-MariaDB":            false,
		"5.5.5-10.3.39-MariaDB":      false,
		"8.0.36":                     true,
		"8.0.13-log":                 true,
		"8.0.12":                     false,
		"8.4.0":                      true,
		"9.1.0-commercial":           true,
		"5.7.44-log":                 false,
	} {
		if got := unsupportedServer(version) == ""; got != ok {
			t.Errorf("unsupportedServer(%q) = %q, want supported=%v", version, unsupportedServer(version), ok)
		}
	}
}
