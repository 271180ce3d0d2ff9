package relay_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/internal/sourcetest"
	"github.com/outboxgo/outbox/relay/poll"
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

// startRelay runs a relay until the test ends (or the returned stop is called).
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
	if rcfg.BackoffBase == 0 {
		rcfg.BackoffBase, rcfg.BackoffMax = 5*time.Millisecond, 50*time.Millisecond
	}
	r, err := relay.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("relay.Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Error("relay did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// produce commits n messages over keys, each payload "key:seq" with a per-key sequence.
func produce(t *testing.T, b *bundle, keys, perKey, perTx int) int {
	return produceFrom(t, b, keys, 0, perKey, perTx)
}

// produceFrom is produce with per-key sequences starting at from.
func produceFrom(t *testing.T, b *bundle, keys, from, perKey, perTx int) int {
	t.Helper()
	ctx := context.Background()
	var msgs []outbox.Message
	for i := from; i < from+perKey; i++ {
		for k := range keys {
			key := fmt.Sprintf("k%d", k)
			msgs = append(msgs, outbox.Message{Topic: "test.orders", Key: key, Payload: []byte(key + ":" + strconv.Itoa(i))})
		}
	}
	for start := 0; start < len(msgs); start += perTx {
		chunk := msgs[start:min(start+perTx, len(msgs))]
		err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error { return b.writer.Enqueue(ctx, tx, chunk...) })
		if err != nil {
			t.Fatal(err)
		}
	}
	return len(msgs)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkOrder verifies that, per key, first deliveries arrive in sequence order.
func checkOrder(t *testing.T, delivered []outbox.Record) {
	t.Helper()
	next := map[string]int{}
	seen := map[string]bool{}
	for _, r := range delivered {
		id := r.ID.String()
		if seen[id] {
			continue // a duplicate: allowed, order is judged on first delivery
		}
		seen[id] = true
		_, n := parse(string(r.Payload))
		if n != next[r.Key] {
			t.Fatalf("key %s: got seq %d, want %d (order violated)", r.Key, n, next[r.Key])
		}
		next[r.Key] = n + 1
	}
}

func parse(p string) (string, int) {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == ':' {
			n, _ := strconv.Atoi(p[i+1:])
			return p[:i], n
		}
	}
	return p, -1
}

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
	sk := sourcetest.NewSink()
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
	got, _ := sk.Snapshot()
	if got[0].Topic != "test.committed" {
		t.Fatalf("delivered %q, want only test.committed", got[0].Topic)
	}
}

func TestThreeRelaysExactlyOnceInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := sourcetest.NewSink()
	n := produce(t, b, 50, 40, 25)
	for i := range 3 {
		startRelay(t, b, sk, poll.Config{RelayID: fmt.Sprint("relay-", i), BatchSize: 100,
			HeartbeatInterval: 50 * time.Millisecond, MemberTTL: time.Second}, relay.Config{})
	}
	// Keep producing while the relays run.
	n += produceFrom(t, b, 50, 40, 20, 10)
	waitFor(t, 60*time.Second, "all messages", func() bool { return sk.Unique() == n })
	waitFor(t, 10*time.Second, "empty outbox", func() bool { return pending(t, b) == 0 })
	delivered, count := sk.Snapshot()
	for id, c := range count {
		if c != 1 {
			t.Errorf("message %s delivered %d times in the happy path", id, c)
		}
	}
	checkOrder(t, delivered)
}

func TestOrderUnderSinkFailures(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := sourcetest.NewSink()
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	sk.Fail = func(*outbox.Record) error {
		mu.Lock()
		defer mu.Unlock()
		if rng.IntN(4) == 0 {
			return errors.New("injected broker error")
		}
		return nil
	}
	n := produce(t, b, 20, 30, 20)
	for i := range 2 {
		startRelay(t, b, sk, poll.Config{RelayID: fmt.Sprint("r", i), BatchSize: 50}, relay.Config{MaxAttempts: 1000})
	}
	waitFor(t, 90*time.Second, "all messages despite failures", func() bool { return sk.Unique() == n })
	delivered, _ := sk.Snapshot()
	checkOrder(t, delivered)
}

func TestBackoffPersistsAcrossRestart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	failing := sourcetest.NewSink()
	failing.Fail = func(*outbox.Record) error { return errors.New("broker down") }
	stop := startRelay(t, b, failing, poll.Config{}, relay.Config{BackoffBase: time.Hour, BackoffMax: 2 * time.Hour})
	ctx := context.Background()
	if err := b.store.Enqueue(ctx, outbox.Message{Topic: "t", Key: "a"}); err != nil {
		t.Fatal(err)
	}
	var (
		attempts  int
		available time.Time
		lastErr   *string
	)
	waitFor(t, 10*time.Second, "first failed attempt", func() bool {
		err := b.pool.QueryRow(ctx, `SELECT attempts, available_at, last_error FROM `+b.table).Scan(&attempts, &available, &lastErr)
		return err == nil && attempts == 1
	})
	stop()
	if lastErr == nil || *lastErr != "broker down" {
		t.Fatalf("last_error = %v, want broker down", lastErr)
	}
	// Full jitter may draw ~0; pin a known future schedule to test the restart honours it.
	if _, err := b.pool.Exec(ctx, `UPDATE `+b.table+` SET available_at = now() + interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	var dbNow time.Time
	if err := b.pool.QueryRow(ctx, `SELECT available_at, now() FROM `+b.table).Scan(&available, &dbNow); err != nil {
		t.Fatal(err)
	}
	ok := sourcetest.NewSink()
	startRelay(t, b, ok, poll.Config{}, relay.Config{})
	waitFor(t, 10*time.Second, "retry after backoff", func() bool { return ok.Unique() == 1 })
	var after time.Time
	if err := b.pool.QueryRow(ctx, `SELECT now()`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	if after.Before(available) {
		t.Fatalf("published at %v, before its persisted available_at %v", after, available)
	}
	got, _ := ok.Snapshot()
	if got[0].Attempts != 1 {
		t.Fatalf("attempts seen by the new relay = %d, want 1", got[0].Attempts)
	}
}

func TestDeadLetterAfterMaxAttemptsThenRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := sourcetest.NewSink()
	var broken sync.Map
	sk.Fail = func(r *outbox.Record) error {
		if _, ok := broken.Load(r.Key); ok {
			return errors.New("rejected by broker")
		}
		return nil
	}
	broken.Store("poison", true)
	startRelay(t, b, sk, poll.Config{}, relay.Config{MaxAttempts: 3})
	ctx := context.Background()
	if err := b.store.Enqueue(ctx,
		outbox.Message{Topic: "t", Key: "poison", Payload: []byte("poison:0")},
		outbox.Message{Topic: "t", Key: "poison", Payload: []byte("poison:1")},
		outbox.Message{Topic: "t", Key: "fine", Payload: []byte("fine:0")},
	); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "two dead letters", func() bool {
		st, err := b.store.Stats(ctx)
		return err == nil && st.DeadLetters == 2 && st.Pending == 0
	})
	dls, err := b.store.DeadLetters(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dls {
		if d.Record.Attempts != 3 || d.LastError != "after 3 attempts: rejected by broker" {
			t.Fatalf("dead letter = attempts %d, error %q", d.Record.Attempts, d.LastError)
		}
	}
	if sk.Unique() != 1 {
		t.Fatalf("delivered %d, want only the healthy key's message", sk.Unique())
	}
	broken.Delete("poison")
	if n, err := b.store.RetryDeadLetters(ctx, nil); err != nil || n != 2 {
		t.Fatalf("RetryDeadLetters = %d, %v", n, err)
	}
	waitFor(t, 10*time.Second, "retried dead letters", func() bool { return sk.Unique() == 3 })
	delivered, _ := sk.Snapshot()
	checkOrder(t, delivered)
}

func TestPermanentErrorDeadLettersAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := sourcetest.NewSink()
	sk.Fail = func(r *outbox.Record) error {
		if len(r.Payload) > 3 {
			return sink.Permanentf("payload of %d bytes exceeds the broker's limit", len(r.Payload))
		}
		return nil
	}
	startRelay(t, b, sk, poll.Config{}, relay.Config{})
	ctx := context.Background()
	if err := b.store.Enqueue(ctx, outbox.Message{Topic: "t", Key: "a", Payload: []byte("toolarge")}, outbox.Message{Topic: "t", Key: "a", Payload: []byte("ok")}); err != nil {
		t.Fatal(err)
	}
	// The dead letter is written with the batch's Finish, after the next message was published.
	waitFor(t, 10*time.Second, "the next message of the key and the dead letter", func() bool {
		st, err := b.store.Stats(ctx)
		return sk.Unique() == 1 && err == nil && st.DeadLetters == 1
	})
	dls, err := b.store.DeadLetters(ctx, 0, 10)
	if err != nil || len(dls) != 1 || dls[0].Record.Attempts != 1 || dls[0].LastError != "payload of 8 bytes exceeds the broker's limit" {
		t.Fatalf("dead letters = %+v, %v", dls, err)
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := sourcetest.NewSink()
	sk.Delay.Store(int64(300 * time.Millisecond))
	n := produce(t, b, 10, 5, 50)
	stop := startRelay(t, b, sk, poll.Config{BatchSize: 10}, relay.Config{})
	waitFor(t, 10*time.Second, "a batch in flight", func() bool { return sk.Calls.Load() > 0 })
	stop()
	delivered := sk.Unique()
	if delivered == 0 {
		t.Fatal("in-flight batch was not finished on shutdown")
	}
	if left := pending(t, b); int(left)+delivered != n {
		t.Fatalf("after shutdown: %d delivered + %d pending != %d enqueued", delivered, left, n)
	}
	// Nothing is left locked or half-done: a new relay delivers the rest.
	sk.Delay.Store(0)
	startRelay(t, b, sk, poll.Config{}, relay.Config{})
	waitFor(t, 20*time.Second, "the rest", func() bool { return sk.Unique() == n })
}

func TestShutdownDeadlineReleasesUnacknowledged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := sourcetest.NewSink()
	sk.Delay.Store(int64(time.Hour)) // a broker that never answers
	produce(t, b, 3, 1, 10)
	stop := startRelay(t, b, sk, poll.Config{}, relay.Config{ShutdownTimeout: 200 * time.Millisecond})
	waitFor(t, 10*time.Second, "a batch in flight", func() bool { return sk.Calls.Load() > 0 })
	start := time.Now()
	stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v with a 200ms deadline", d)
	}
	var attempts, n int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*), coalesce(sum(attempts),0) FROM `+b.table).Scan(&n, &attempts); err != nil {
		t.Fatal(err)
	}
	if n != 3 || attempts != 0 {
		t.Fatalf("after shutdown: %d rows with %d attempts, want 3 rows released unchanged", n, attempts)
	}
}

// TestSessionKilledBetweenPublishAndDelete: the claim's transaction dies between the publish
// and the delete, so the rows come back unchanged; the relay remembers what it published and
// deletes them without publishing them again (a relay that crashes itself republishes: the
// chaos checker's kill -9).
func TestSessionKilledBetweenPublishAndDelete(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := sourcetest.NewSink()
	var once sync.Once
	// After the first publish, kill the relay's database sessions: the claim's transaction
	// dies before it can delete what was just published.
	sk.Fail = func(*outbox.Record) error {
		once.Do(func() {
			go func() {
				_, _ = b.pool.Exec(context.Background(),
					`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE state = 'idle in transaction' AND pid <> pg_backend_pid() AND query LIKE '%`+b.table[:len(b.table)-len(".outbox")]+`%'`)
			}()
			time.Sleep(200 * time.Millisecond)
		})
		return nil
	}
	n := produce(t, b, 5, 4, 20)
	startRelay(t, b, sk, poll.Config{}, relay.Config{})
	waitFor(t, 30*time.Second, "all messages and an empty outbox", func() bool {
		return sk.Unique() == n && pending(t, b) == 0
	})
	delivered, count := sk.Snapshot()
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
	sk := sourcetest.NewSink()
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
