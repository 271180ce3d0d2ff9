package binlog_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/mysqltest"
	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay/binlog"
)

// env is one test's database with the migrated outbox tables.
type env struct {
	db     *sql.DB
	dsn    string // the database's DSN
	dbName string
	table  string
	store  *mysql.Store
	writer *outbox.Writer
}

func setup(tb testing.TB) *env {
	tb.Helper()
	db, dsn, name := mysqltest.Database(tb)
	store, err := mysql.New(context.Background(), mysql.Config{DB: db})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := store.MigrateUp(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return &env{db: db, dsn: dsn, dbName: name, table: outbox.DefaultTable, store: store, writer: store.Writer()}
}

// config is a source configuration for e with test-friendly intervals, logging to the test.
func (e *env) config(tb testing.TB) binlog.Config {
	return binlog.Config{
		Logger:            logtest.New(tb),
		DSN:               mysqltest.DSN(),
		DB:                e.db,
		Table:             e.table,
		PositionInterval:  50 * time.Millisecond,
		ReconnectInterval: 100 * time.Millisecond,
	}
}

func (e *env) source(tb testing.TB, cfg binlog.Config) *binlog.Source {
	tb.Helper()
	return sourcetest.MustNew(tb, binlog.New, cfg)
}

// scenarios is e as the shared scenarios of sourcetest use it: sources with e.config.
func (e *env) scenarios(tb testing.TB) sourcetest.Env[*binlog.Source] {
	return sourcetest.Env[*binlog.Source]{NewSource: func() *binlog.Source { return e.source(tb, e.config(tb)) }, Commit: e.commit}
}

// produce commits sourcetest.Messages(keys, from, perKey), perTx per transaction.
func (e *env) produce(tb testing.TB, keys, from, perKey, perTx int) []outbox.Message {
	tb.Helper()
	return sourcetest.Produce(tb, keys, from, perKey, perTx, e.commit)
}

// commit enqueues ms in one transaction.
func (e *env) commit(tb testing.TB, ms ...outbox.Message) {
	tb.Helper()
	if err := e.store.Enqueue(context.Background(), ms...); err != nil {
		tb.Fatal(err)
	}
}

func (e *env) rows(tb testing.TB) int {
	tb.Helper()
	return e.count(tb, e.table)
}

func (e *env) count(tb testing.TB, table string) int {
	tb.Helper()
	var n int
	if err := e.db.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func (e *env) saved(tb testing.TB, name string) binlog.Position {
	tb.Helper()
	p, ok, err := binlog.ReadPosition(context.Background(), e.db, e.table, name)
	if err != nil || !ok {
		tb.Fatalf("ReadPosition = %+v, %v, %v", p, ok, err)
	}
	return p
}
