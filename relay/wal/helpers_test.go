package wal_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay/wal"
)

// slotPrefix starts the name of every slot these tests create, so TestMain can find leftovers.
const slotPrefix = "outbox_wal_"

// slotTokens bounds how many tests hold a slot at once: the server allows only
// max_replication_slots (and max_wal_senders) for everyone sharing it.
var slotTokens = make(chan struct{}, 4)

// env is one test's database schema (migrated outbox tables), slot and publication names, and
// message prefix.
type env struct {
	pool    *pgxpool.Pool
	table   string
	store   *postgres.Store
	writer  *outbox.Writer
	logical *outbox.LogicalWriter
	slot    string
	prefix  string
	mode    wal.Mode
}

func setup(tb testing.TB, mode wal.Mode) *env {
	tb.Helper()
	pool, schema := pgtest.Schema(tb)
	table := schema + ".outbox"
	store, err := postgres.New(context.Background(), postgres.Config{Pool: pool, Table: table})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := store.MigrateUp(context.Background()); err != nil {
		tb.Fatal(err)
	}
	e := &env{pool: pool, table: table, store: store, writer: store.Writer(), mode: mode,
		slot: slotPrefix + schema[2:], prefix: "outbox-" + schema}
	e.logical, err = outbox.NewLogicalWriter(outbox.LogicalWriterConfig{Prefix: e.prefix})
	if err != nil {
		tb.Fatal(err)
	}
	slotTokens <- struct{}{}
	tb.Cleanup(func() {
		defer func() { <-slotTokens }()
		dropSlot(tb, pool, e.slot)
	})
	return e
}

// dropSlot drops the test's slot and publication (see pgtest.DropSlot).
func dropSlot(tb testing.TB, pool *pgxpool.Pool, slot string) {
	tb.Helper()
	pgtest.DropSlot(tb, pool, slot)
}

// config is a source configuration for e with test-friendly intervals, logging to the test.
func (e *env) config(tb testing.TB) wal.Config {
	return wal.Config{
		Logger:            logtest.New(tb),
		ConnString:        pgtest.URL(),
		Pool:              e.pool,
		Mode:              e.mode,
		Table:             e.table,
		SlotName:          e.slot,
		MessagePrefix:     e.prefix,
		StatusInterval:    50 * time.Millisecond,
		ReconnectInterval: 100 * time.Millisecond,
	}
}

func (e *env) source(tb testing.TB, cfg wal.Config) *wal.Source {
	tb.Helper()
	return sourcetest.MustNew(tb, wal.New, cfg)
}

// scenarios is e as the shared scenarios of sourcetest use it: sources with e.config.
func (e *env) scenarios(tb testing.TB) sourcetest.Env[*wal.Source] {
	return sourcetest.Env[*wal.Source]{NewSource: func() *wal.Source { return e.source(tb, e.config(tb)) }, Commit: e.commit}
}

// produce commits sourcetest.Messages(keys, from, perKey), perTx per transaction, through the
// env's mode.
func (e *env) produce(tb testing.TB, keys, from, perKey, perTx int) []outbox.Message {
	tb.Helper()
	return sourcetest.Produce(tb, keys, from, perKey, perTx, e.commit)
}

// commit enqueues msgs in one transaction through the env's mode.
func (e *env) commit(tb testing.TB, msgs ...outbox.Message) {
	tb.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error { return e.enqueue(ctx, tx, msgs...) })
	if err != nil {
		tb.Fatal(err)
	}
}

func (e *env) enqueue(ctx context.Context, tx pgx.Tx, msgs ...outbox.Message) error {
	if e.mode == wal.ModeLogical {
		return e.logical.Enqueue(ctx, tx, msgs...)
	}
	return e.writer.Enqueue(ctx, tx, msgs...)
}

func (e *env) rows(tb testing.TB) int {
	tb.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+e.table).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func (e *env) confirmedLSN(tb testing.TB) string {
	tb.Helper()
	var lsn *string
	err := e.pool.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, e.slot).Scan(&lsn)
	if err != nil || lsn == nil {
		tb.Fatalf("slot position: %v", err)
	}
	return *lsn
}

var modes = []wal.Mode{wal.ModeTable, wal.ModeLogical}
