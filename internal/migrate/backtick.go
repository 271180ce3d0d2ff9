package migrate

import (
	"io/fs"

	"github.com/outboxgo/outbox/internal/sqlident"
)

// BacktickNames are the identifiers a MySQL or MariaDB migration template may use: the same
// names as Names, quoted with backticks (those servers read double quotes as strings).
type BacktickNames struct {
	Table    string
	Dead     string
	Relays   string
	Versions string
	table    sqlident.Table
}

// BacktickNamesFor derives the template names of table t, quoted with backticks.
func BacktickNamesFor(t sqlident.Table) BacktickNames {
	return BacktickNames{
		Table:    t.QuotedMySQL(),
		Dead:     t.Derived("_dead").QuotedMySQL(),
		Relays:   t.Derived("_relays").QuotedMySQL(),
		Versions: t.Derived("_migrations").QuotedMySQL(),
		table:    t,
	}
}

// Name returns the quoted base table name (without database) followed by suffix.
func (n BacktickNames) Name(suffix string) string { return "`" + n.table.Name + suffix + "`" }

// Sibling returns the quoted, database-qualified name of an object named after the table
// plus suffix.
func (n BacktickNames) Sibling(suffix string) string { return n.table.Derived(suffix).QuotedMySQL() }

// LoadBacktick is Load for migrations rendered with BacktickNames.
func LoadBacktick(fsys fs.FS, dir string, names BacktickNames) ([]Migration, error) {
	return loadWith(fsys, dir, names)
}
