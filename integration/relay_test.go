package integration_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/relay/relaytest"
	"github.com/outboxgo/outbox/sink"
)

type bundle struct {
	pool   *pgxpool.Pool
	table  string
	store  *postgres.Store
	writer *outbox.Writer
}

func setup(t testing.TB) *bundle {
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
	return &bundle{pool: pool, table: table, store: store, writer: store.Writer()}
}

// startRelay runs a relay over a poll source on b's store until the test ends (or the
// returned stop is called), with relaytest's test values.
func startRelay(t testing.TB, b *bundle, sk sink.Sink, pcfg poll.Config, rcfg relay.Config) (stop func()) {
	t.Helper()
	pcfg.Store = b.store
	if pcfg.PollInterval == 0 {
		pcfg.PollInterval = 10 * time.Millisecond
	}
	src, err := poll.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	rcfg.Source, rcfg.Sink = src, sk
	r := relaytest.Start(t, rcfg)
	return func() {
		if err := r.Stop(); err != nil {
			t.Errorf("relay.Run: %v", err)
		}
	}
}

// produce commits n messages over keys, each payload "key:seq" with a per-key sequence.
func produce(t *testing.T, b *bundle, keys, perKey, perTx int) int {
	return produceFrom(t, b, keys, 0, perKey, perTx)
}

// produceFrom is produce with per-key sequences starting at from.
func produceFrom(t *testing.T, b *bundle, keys, from, perKey, perTx int) int {
	t.Helper()
	ctx := context.Background()
	msgs := relaytest.Messages(keys, from, perKey)
	for start := 0; start < len(msgs); start += perTx {
		chunk := msgs[start:min(start+perTx, len(msgs))]
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return b.writer.Enqueue(ctx, tx, chunk...) })
		if err != nil {
			t.Fatal(err)
		}
	}
	return len(msgs)
}

// waitFor and checkOrder are relaytest's.
var (
	waitFor    = relaytest.WaitFor
	checkOrder = relaytest.CheckOrder
)

func pending(t *testing.T, b *bundle) int64 {
	t.Helper()
	st, err := b.store.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Pending
}

func TestRollbackPublishesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := relaytest.NewSink()
	startRelay(t, b, sk, poll.Config{}, relay.Config{})
	ctx := context.Background()
	errBusiness := errors.New("business rule failed")
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		if err := b.writer.Enqueue(ctx, tx, outbox.Message{Topic: "test.rolledback", Key: "x"}); err != nil {
			return err
		}
		return errBusiness
	})
	if !errors.Is(err, errBusiness) {
		t.Fatalf("tx error = %v", err)
	}
	if err := b.store.Enqueue(ctx, outbox.Message{Topic: "test.committed", Key: "x"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "committed message", func() bool { return sk.Unique() == 1 })
	got := sk.Acked()
	if got[0].Topic != "test.committed" {
		t.Fatalf("delivered %q, want only test.committed", got[0].Topic)
	}
}

func TestThreeRelaysExactlyOnceInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := relaytest.NewSink()
	n := produce(t, b, 50, 40, 25)
	for i := range 3 {
		startRelay(t, b, sk, poll.Config{RelayID: fmt.Sprint("relay-", i), BatchSize: 100,
			HeartbeatInterval: 50 * time.Millisecond, MemberTTL: time.Second}, relay.Config{})
	}
	// Keep producing while the relays run.
	n += produceFrom(t, b, 50, 40, 20, 10)
	waitFor(t, 60*time.Second, "all messages", func() bool { return sk.Unique() == n })
	waitFor(t, 10*time.Second, "empty outbox", func() bool { return pending(t, b) == 0 })
	delivered, count := sk.Acked(), sk.Counts()
	for id, c := range count {
		if c != 1 {
			t.Errorf("message %s delivered %d times in the happy path", id, c)
		}
	}
	checkOrder(t, delivered)
}

// TestSessionKilledBetweenPublishAndDelete: the claim's transaction dies between the publish
// and the delete, so the rows come back unchanged; the relay remembers what it published and
// deletes them without publishing them again (a relay that crashes itself republishes: the
// chaos checker's kill -9).
func TestSessionKilledBetweenPublishAndDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := relaytest.NewSink()
	var once sync.Once
	// After the first publish, kill the relay's database sessions: the claim's transaction
	// dies before it can delete what was just published.
	sk.Script(relaytest.Rule{Fail: func(*outbox.Record) error {
		once.Do(func() {
			go func() {
				_, _ = b.pool.Exec(context.Background(),
					`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle in transaction' AND pid <> pg_backend_pid() AND query LIKE '%`+b.table[:len(b.table)-len(".outbox")]+`%'`)
			}()
			time.Sleep(200 * time.Millisecond)
		})
		return nil
	}})
	n := produce(t, b, 5, 4, 20)
	startRelay(t, b, sk, poll.Config{}, relay.Config{})
	waitFor(t, 30*time.Second, "all messages and an empty outbox", func() bool {
		return sk.Unique() == n && pending(t, b) == 0
	})
	delivered, count := sk.Acked(), sk.Counts()
	dups := 0
	for _, c := range count {
		dups += c - 1
	}
	if dups != 0 {
		t.Fatalf("%d duplicates after the claim's session was killed: the relay published again what it had published", dups)
	}
	checkOrder(t, delivered)
}

func TestConfigErrorsNameTheField(t *testing.T) {
	t.Parallel()
	_, err := relay.New(relay.Config{})
	var ce *outbox.ConfigError
	if !errors.As(err, &ce) || ce.Field != "source" {
		t.Fatalf("relay.New(empty) = %v, want ConfigError on source", err)
	}
	_, err = poll.New(poll.Config{Store: &postgres.Store{}, BatchSize: -1})
	if !errors.As(err, &ce) || ce.Field != "batch_size" {
		t.Fatalf("poll.New(batch -1) = %v, want ConfigError on batch_size", err)
	}
	_, err = postgres.New(context.Background(), postgres.Config{URL: "postgres://x", Table: "bad name"})
	if !errors.As(err, &ce) || ce.Field != "table" {
		t.Fatalf("postgres.New(bad table) = %v, want ConfigError on table", err)
	}
}

// TestSlowCommitNotSkipped: a transaction that took its id early and commits late is still
// published, although later ids were published (and deleted) meanwhile.
func TestSlowCommitNotSkipped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := relaytest.NewSink()
	startRelay(t, b, sk, poll.Config{}, relay.Config{})
	ctx := context.Background()
	slow, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	if err := b.writer.Enqueue(ctx, slow, outbox.Message{Topic: "t", Key: "slow", Payload: []byte("slow:0")}); err != nil {
		t.Fatal(err)
	}
	n := produce(t, b, 10, 10, 10)
	waitFor(t, 20*time.Second, "the fast transactions", func() bool { return sk.Unique() == n })
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the slow transaction's message", func() bool { return sk.Unique() == n+1 })
}
