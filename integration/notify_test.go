package integration_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/relay/relaytest"
	"github.com/outboxgo/outbox/sink"
)

// With a poll interval of a minute, only a commit notification can deliver within seconds.
func TestNotifyWakesRelay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := relaytest.NewSink()
	startRelay(t, b, sk, poll.Config{PollInterval: time.Minute}, relay.Config{})
	ctx := context.Background()
	// Let the workers go idle after their first (empty) claims.
	waitFor(t, 10*time.Second, "the listener", func() bool { return listeners(t, b) == 1 })
	for i := range 3 {
		start := time.Now()
		if err := b.store.Enqueue(ctx, outbox.Message{Topic: "t", Key: "k"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "a notified delivery", func() bool { return sk.Unique() == i+1 })
		t.Logf("delivered %v after commit", time.Since(start))
	}
	// Kill the listening session: the relay reconnects and notifications work again.
	if _, err := b.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN outbox_insert' AND application_name = $1`, appName(t, b)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the listener to come back", func() bool { return listeners(t, b) == 1 })
	if err := b.store.Enqueue(ctx, outbox.Message{Topic: "t", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a notified delivery after reconnect", func() bool { return sk.Unique() == 4 })
}

// On a schema of migration 5 (a relay upgraded before its schema), whose trigger notifies
// every commit with its keys' hashes, a commit wakes only the worker whose share of the keys
// holds its message: the others do not claim (with four workers, a commit used to cost four
// claims).
func TestNotifyWakesOnlyTheKeysWorker(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	olderSchema(t, b)
	cs, sk := startCounting(t, b, 4)
	before := cs.idle(t)
	for i := range 5 {
		if err := b.store.Enqueue(ctx, outbox.Message{Topic: "t", Key: "k"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "a notified delivery", func() bool { return sk.Unique() == i+1 })
	}
	time.Sleep(300 * time.Millisecond)
	after := cs.counts()
	woken := 0
	for i := range after {
		if after[i] != before[i] {
			woken++
		}
	}
	if woken != 1 {
		t.Fatalf("claims per worker before %v, after five commits of one key %v: want one worker claiming", before, after)
	}
}

// slotCountingStore counts the claims of each worker slot; it is a dialect.Notifier through
// the embedded store.
type slotCountingStore struct {
	*postgres.Store
	mu     sync.Mutex
	claims []int
}

func (s *slotCountingStore) Claim(ctx context.Context, req dialect.ClaimRequest) (dialect.Claim, error) {
	s.mu.Lock()
	s.claims[req.Slot]++
	s.mu.Unlock()
	return s.Store.Claim(ctx, req)
}

func (s *slotCountingStore) counts() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.claims)
}

// idle waits until every worker has claimed (its first claim and the connect-time wake-up's)
// and none claims any more, and returns the counts then.
func (s *slotCountingStore) idle(t *testing.T) []int {
	t.Helper()
	var c []int
	waitFor(t, 10*time.Second, "idle workers", func() bool {
		prev := s.counts()
		// Long enough for the connect-time wake-up's claim on a loaded machine: a claim
		// counted after this returns would be taken for one a commit caused.
		time.Sleep(time.Second)
		c = s.counts()
		return slices.Equal(prev, c) && !slices.Contains(c, 0)
	})
	return c
}

// startCounting runs a relay of workers workers, polling once a minute, over b's store with
// its claims counted, until the test ends; it returns once the relay listens.
func startCounting(t *testing.T, b *bundle, workers int) (*slotCountingStore, *relaytest.Sink) {
	t.Helper()
	cs := &slotCountingStore{Store: b.store, claims: make([]int, workers)}
	sk := relaytest.NewSink()
	runListening(t, b, poll.Config{Store: cs, Workers: workers, PollInterval: time.Minute}, sk)
	return cs, sk
}

// runListening runs a relay over a poll source of pcfg into sk until the test ends; it
// returns once the relay listens for b's notifications.
func runListening(t *testing.T, b *bundle, pcfg poll.Config, sk sink.Sink) {
	t.Helper()
	src, err := poll.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{Source: src, Sink: sk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, 10*time.Second, "the listener", func() bool { return listeners(t, b) == 1 })
}

func appName(t *testing.T, b *bundle) string {
	t.Helper()
	return b.pool.Config().ConnConfig.RuntimeParams["application_name"]
}

// listeners counts sessions of this test's pool listening for notifications.
func listeners(t *testing.T, b *bundle) int {
	t.Helper()
	var n int
	err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN outbox_insert' AND application_name = $1`, appName(t, b)).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// On a schema of migration 5, whose trigger notifies every commit, a claim that read its
// worker's whole share is not followed by another claim (it would come back empty): the
// worker waits for the next notification. A commit made while the worker is busy publishing
// still wakes it at once.
func TestNotifyNoEmptyClaimAfterExhaustiveBatch(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	olderSchema(t, b)
	cs, sk := startCounting(t, b, 1)
	before := cs.idle(t)
	const commits = 5
	for i := range commits {
		if err := b.store.Enqueue(ctx, outbox.Message{Topic: "t", Key: "k"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "a notified delivery", func() bool { return sk.Unique() == i+1 })
	}
	time.Sleep(300 * time.Millisecond)
	if got := cs.counts()[0] - before[0]; got != commits {
		t.Fatalf("%d claims for %d single-message commits, want one each", got, commits)
	}

	// A commit while the worker publishes: its notification is kept for the worker.
	sk.Script(relaytest.Rule{Delay: 300 * time.Millisecond})
	if err := b.store.Enqueue(ctx, outbox.Message{Topic: "t", Key: "a"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the publish to start", func() bool { return sk.Started() > commits })
	start := time.Now()
	if err := b.store.Enqueue(ctx, outbox.Message{Topic: "t", Key: "b"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the commit made during a publish", func() bool { return sk.Unique() == commits+2 })
	t.Logf("delivered %v after commit", time.Since(start))
}

// olderSchema reverts b's table to migration 5: the trigger of migration 4, which notifies
// every commit, with its keys' hashes, and no wake-up gate.
func olderSchema(t *testing.T, b *bundle) {
	t.Helper()
	ctx := context.Background()
	st, err := b.store.MigrationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	steps := 0
	for _, m := range st {
		if m.Applied && m.Version > 5 {
			steps++
		}
	}
	if _, err := b.store.MigrateDown(ctx, steps); err != nil {
		t.Fatal(err)
	}
}
