// Package migrate loads numbered SQL migrations embedded by a dialect, renders their table
// names, and runs them: Runner is the apply, record, revert and status loop of every dialect,
// over a small per-dialect Driver (a session under the dialect's lock, running a script,
// recording and listing applied versions). Each dialect keeps its own SQL files and driver.
//
// Files are named NNN_name.up.sql and NNN_name.down.sql. Their text is a text/template over
// Names: {{.Table}}, {{.Dead}}, {{.Relays}} are quoted table names, {{.Name "_suffix"}} a
// quoted unqualified name for constraints and indexes, {{.Sibling "_suffix"}} a qualified one.
package migrate

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/outboxgo/outbox/internal/sqlident"
)

// Migration is one numbered step.
type Migration struct {
	Version int
	Name    string
	Up      string
	Down    string
}

// Names are the identifiers a migration template may use, already quoted.
type Names struct {
	Table  string
	Dead   string
	Relays string
	table  sqlident.Table
}

// Name returns the quoted base table name (without schema) followed by suffix: for indexes
// and constraints, which live in their table's schema.
func (n Names) Name(suffix string) string { return `"` + n.table.Name + suffix + `"` }

// Sibling returns the quoted, schema-qualified name of an object named after the table plus
// suffix: for functions and other schema objects.
func (n Names) Sibling(suffix string) string { return n.table.Derived(suffix).Quoted() }

// Literal returns the base table name followed by suffix as an SQL string literal: for
// catalogs that list tables by name (SQLite's sqlite_sequence).
func (n Names) Literal(suffix string) string {
	return "'" + strings.ReplaceAll(n.table.Name+suffix, "'", "''") + "'"
}

// Regclass returns the schema-qualified name of the object named after the table plus suffix
// as an SQL regclass literal ('"schema"."name"'::regclass): resolved once, where the SQL that
// holds it is parsed (a trigger's WHEN clause keeps the object's oid).
func (n Names) Regclass(suffix string) string {
	return "'" + strings.ReplaceAll(n.Sibling(suffix), "'", "''") + "'::regclass"
}

// NamesFor derives the template names of table t.
func NamesFor(t sqlident.Table) Names {
	return Names{
		Table:  t.Quoted(),
		Dead:   t.Derived("_dead").Quoted(),
		Relays: t.Derived("_relays").Quoted(),
		table:  t,
	}
}

// Load reads every migration in dir of fsys, renders it for names, and returns them by version.
func Load(fsys fs.FS, dir string, names Names) ([]Migration, error) {
	return loadWith(fsys, dir, names)
}

// loadWith reads and renders the migrations of dir for any template data.
func loadWith(fsys fs.FS, dir string, data any) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("reading migrations: %w", err)
	}
	byVersion := map[int]*Migration{}
	for _, e := range entries {
		file := e.Name()
		var kind string
		switch {
		case strings.HasSuffix(file, ".up.sql"):
			kind = "up"
		case strings.HasSuffix(file, ".down.sql"):
			kind = "down"
		default:
			continue
		}
		stem := strings.TrimSuffix(file, "."+kind+".sql")
		num, name, ok := strings.Cut(stem, "_")
		if !ok {
			return nil, fmt.Errorf("migration %s: want NNN_name.%s.sql", file, kind)
		}
		v, err := strconv.Atoi(num)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: bad version %q", file, num)
		}
		raw, err := fs.ReadFile(fsys, path.Join(dir, file))
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", file, err)
		}
		tmpl, err := template.New(file).Option("missingkey=error").Parse(string(raw))
		if err != nil {
			return nil, fmt.Errorf("parsing migration %s: %w", file, err)
		}
		var b strings.Builder
		if err := tmpl.Execute(&b, data); err != nil {
			return nil, fmt.Errorf("rendering migration %s: %w", file, err)
		}
		m := byVersion[v]
		if m == nil {
			m = &Migration{Version: v, Name: name}
			byVersion[v] = m
		}
		if kind == "up" {
			m.Up = b.String()
		} else {
			m.Down = b.String()
		}
	}
	out := make([]Migration, 0, len(byVersion))
	for _, m := range byVersion {
		if m.Up == "" || m.Down == "" {
			return nil, fmt.Errorf("migration %d: needs both .up.sql and .down.sql", m.Version)
		}
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("migrations must be numbered 1, 2, 3...: found %d at position %d", m.Version, i+1)
		}
	}
	return out, nil
}
