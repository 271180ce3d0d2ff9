package wal

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/relay/internal/keyqueue"
)

// TestDeleteWaitsForVisibility: the walsender can stream a transaction a moment before other
// sessions see it. A row whose transaction is not visible yet is deleted in a later round,
// not given up; a row whose transaction is visible but which is gone counts as deleted.
func TestDeleteWaitsForVisibility(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, table, store, s := newAckerEnv(t)

	// An insert whose transaction is still open stands for one not visible yet.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := store.Writer().Enqueue(ctx, tx, outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	var id, full int64
	if err := tx.QueryRow(ctx, `SELECT max(id), pg_current_xact_id()::text::bigint FROM `+table).Scan(&id, &full); err != nil {
		t.Fatal(err)
	}
	pending := &keyqueue.Entry[txnInfo]{Record: outbox.Record{Seq: id}, Txn: &keyqueue.Txn[txnInfo]{Info: txnInfo{xid: uint32(full)}}}
	// A committed transaction whose row is already gone.
	var doneXid int64
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&doneXid)
	})
	if err != nil {
		t.Fatal(err)
	}
	gone := &keyqueue.Entry[txnInfo]{Record: outbox.Record{Seq: id + 1000}, Txn: &keyqueue.Txn[txnInfo]{Info: txnInfo{xid: uint32(doneXid)}}}

	later, err := s.deleteRows(ctx, []ackOp{{Entry: pending, Kind: keyqueue.Delete}, {Entry: gone, Kind: keyqueue.Delete}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(later) != 1 || later[0].Entry != pending {
		t.Fatalf("later = %+v, want only the invisible row", later)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	later, err = s.deleteRows(ctx, later, 0)
	if err != nil || len(later) != 0 {
		t.Fatalf("second round: later %+v, %v", later, err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d rows left, %v", n, err)
	}
}

// TestApplyCountsBrokerDuplicates: duplicate acknowledgements (a delete's and a count-only
// one's) reach the store's broker duplicates counter; other acknowledgements do not.
func TestApplyCountsBrokerDuplicates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, _, store, s := newAckerEnv(t)
	entry := func(seq int64) *keyqueue.Entry[txnInfo] {
		return &keyqueue.Entry[txnInfo]{Record: outbox.Record{Seq: seq}, Txn: &keyqueue.Txn[txnInfo]{}}
	}
	ops := []ackOp{
		{Entry: entry(1), Kind: keyqueue.Delete, Duplicate: true},
		{Entry: entry(2), Kind: keyqueue.Delete},
		{Entry: entry(3), Kind: keyqueue.CountOnly, Duplicate: true},
	}
	if _, err := s.apply(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if _, err := s.apply(ctx, ops[2:]); err != nil {
		t.Fatal(err)
	}
	st, err := store.Stats(ctx)
	if err != nil || st.BrokerDuplicates != 3 {
		t.Fatalf("Stats = %+v, %v; want 3 broker duplicates", st, err)
	}
}

// newAckerEnv returns a migrated store in a fresh schema and a table-mode source on it.
func newAckerEnv(t *testing.T) (*pgxpool.Pool, string, *postgres.Store, *Source) {
	t.Helper()
	pool, schema := pgtest.Schema(t)
	table := schema + ".outbox"
	store, err := postgres.New(context.Background(), postgres.Config{Pool: pool, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.MigrateUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	return pool, table, store, newTestSource(t, func(c *Config) { c.Pool, c.Mode, c.Table = pool, ModeTable, table })
}
