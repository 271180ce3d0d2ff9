package main

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for PostgreSQL

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/dialect/sqlite"
)

// DefaultSchema is the PostgreSQL schema of the example's tables.
const DefaultSchema = "notification_example"

// Storage says where the services keep their tables: SQLite files in Dir (orders.db for the
// order service, notify.db for the notification service), or, when URL is set, a PostgreSQL
// database, every table in Schema.
type Storage struct {
	Dir    string
	URL    string // postgres://...; "" for SQLite
	Schema string // PostgreSQL only; default DefaultSchema
}

// Dialect is the SQL dialect of the storage.
func (s Storage) Dialect() outbox.Dialect {
	if s.URL != "" {
		return outbox.Postgres
	}
	return outbox.SQLite
}

// Table qualifies a table name with the schema on PostgreSQL.
func (s Storage) Table(name string) string {
	if s.URL == "" {
		return name
	}
	return s.schema() + "." + name
}

// Where names the storage for people.
func (s Storage) Where(service string) string {
	if s.URL == "" {
		return "SQLite " + s.path(service)
	}
	return "PostgreSQL schema " + s.schema()
}

func (s Storage) schema() string { return cmp.Or(s.Schema, DefaultSchema) }

func (s Storage) path(service string) string { return filepath.Join(s.Dir, service+".db") }

// OpenDB opens a service's database ("orders" or "notify") with database/sql, creating the
// schema on PostgreSQL.
func (s Storage) OpenDB(ctx context.Context, service string) (*sql.DB, error) {
	if s.URL == "" {
		return sql.Open(sqlite.DriverName, sqlite.DSN(s.path(service)))
	}
	db, err := sql.Open("pgx", s.URL)
	if err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+s.schema()); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating schema %s: %w", s.schema(), err)
	}
	return db, nil
}

// OutboxStore is what the example needs of an outbox store: the relay's claims, the
// migrations, the stats and the writer.
type OutboxStore interface {
	dialect.Store
	Writer() *outbox.Writer
}

// OpenOutbox opens the outbox table table of a service's database: on SQLite over db (nil:
// the Store opens the file itself, with commit notifications for its relay), on PostgreSQL
// with a pool of its own.
func (s Storage) OpenOutbox(ctx context.Context, service, table string, db *sql.DB, logger *slog.Logger) (OutboxStore, error) {
	if s.URL == "" {
		if db != nil {
			return sqlite.New(ctx, sqlite.Config{DB: db, Table: table, Logger: logger})
		}
		return sqlite.New(ctx, sqlite.Config{Path: s.path(service), Table: table, Logger: logger})
	}
	return postgres.New(ctx, postgres.Config{URL: s.URL, Table: s.Table(table), Logger: logger, MaxConns: 4})
}
