package main

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/dialect/sqlite"
)

// database is one service's own database: an SQLite file, or a PostgreSQL schema. It holds
// the service's business tables, its outbox and its inbox.
type database struct {
	db      *sql.DB // business rows and the inbox
	dialect outbox.Dialect
	store   dialect.Store // the outbox, for the relay
	writer  *outbox.Writer
	table   func(name string) string // qualifies a table name (PostgreSQL schema)
	close   func()
}

// dbOptions say where a service's database is.
type dbOptions struct {
	path        string // SQLite file
	databaseURL string // PostgreSQL server; used when set
	schema      string // PostgreSQL schema of the service
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// openDatabase opens (and migrates) the outbox of a service's database; the caller creates
// its business tables and inbox.
func openDatabase(ctx context.Context, o dbOptions, logger *slog.Logger) (*database, error) {
	if o.databaseURL == "" {
		st, err := sqlite.New(ctx, sqlite.Config{Path: o.path, Logger: logger})
		if err != nil {
			return nil, err
		}
		if _, err := st.MigrateUp(ctx); err != nil {
			_ = st.Close()
			return nil, fmt.Errorf("migrating the outbox of %s: %w", o.path, err)
		}
		return &database{db: st.DB(), dialect: outbox.SQLite, store: st, writer: st.Writer(),
			table: func(n string) string { return n }, close: func() { _ = st.Close() }}, nil
	}

	if !schemaName.MatchString(o.schema) {
		return nil, fmt.Errorf("schema %q: use lower-case letters, digits and _", o.schema)
	}
	cc, err := pgx.ParseConfig(o.databaseURL)
	if err != nil {
		return nil, fmt.Errorf("--database-url: %w", err)
	}
	db := stdlib.OpenDB(*cc)
	db.SetMaxOpenConns(8) // a service's consumers, order placing and inbox: PostgreSQL's connections are shared
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+o.schema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("creating schema %s: %w", o.schema, err)
	}
	st, err := postgres.New(ctx, postgres.Config{URL: o.databaseURL, Table: o.schema + ".outbox", Logger: logger, MaxConns: 4})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	if _, err := st.MigrateUp(ctx); err != nil {
		_ = st.Close()
		_ = db.Close()
		return nil, fmt.Errorf("migrating the outbox of schema %s: %w", o.schema, err)
	}
	return &database{db: db, dialect: outbox.Postgres, store: st, writer: st.Writer(),
		table: func(n string) string { return o.schema + "." + n },
		close: func() { _ = st.Close(); _ = db.Close() }}, nil
}

// q rewrites the ? placeholders of query for PostgreSQL ($1, $2...) and expands {t:name}
// into the qualified table name.
func (d *database) q(query string) string {
	for {
		i := strings.Index(query, "{t:")
		if i < 0 {
			break
		}
		j := strings.IndexByte(query[i:], '}')
		query = query[:i] + d.table(query[i+3:i+j]) + query[i+j+1:]
	}
	if d.dialect != outbox.Postgres {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// idColumn is an auto-incremented primary key in the database's dialect.
func (d *database) idColumn() string {
	if d.dialect == outbox.Postgres {
		return "id BIGSERIAL PRIMARY KEY"
	}
	return "id INTEGER PRIMARY KEY AUTOINCREMENT"
}
