package relay_test

// The engine's tests: per-key order, waves, retries and backoff, dead letters, pauses and
// probes of unavailable sinks, unrecorded outcomes, the failure log, hooks and shutdown, over
// relaytest's in-memory source and scripted sink. They need no service; the tests that need
// PostgreSQL (its claim SQL, NOTIFY, partitions across relays) are in the other files.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/relaytest"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/route"
)

// run starts a relay over src into sk until the test ends, with relaytest's test values; the
// returned stop stops it, failing the test on an error of Run.
func run(t *testing.T, src relay.Source, sk sink.Sink, cfg relay.Config) (stop func()) {
	t.Helper()
	cfg.Source, cfg.Sink = src, sk
	r := relaytest.Start(t, cfg)
	return func() {
		t.Helper()
		if err := r.Stop(); err != nil {
			t.Errorf("relay.Run: %v", err)
		}
	}
}

// attemptsSpent adds up the attempts recorded for the messages still pending.
func attemptsSpent(src *relaytest.Source) int {
	n := 0
	for _, p := range src.Backlog() {
		n += p.Attempts
	}
	return n
}

func TestOrderUnderSinkFailures(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{BatchSize: 50})
	sk := relaytest.NewSink()
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	sk.Script(relaytest.Rule{Fail: func(*outbox.Record) error {
		mu.Lock()
		defer mu.Unlock()
		if rng.IntN(4) == 0 {
			return errors.New("injected broker error")
		}
		return nil
	}})
	msgs := relaytest.Messages(20, 0, 30)
	src.Enqueue(msgs...)
	for range 2 {
		run(t, src, sk, relay.Config{Workers: 2, MaxAttempts: 1000})
	}
	relaytest.WaitFor(t, 30*time.Second, "all messages despite failures", func() bool { return sk.Unique() == len(msgs) })
	relaytest.CheckOrder(t, sk.Acked())
	relaytest.WaitFor(t, 10*time.Second, "an empty backlog", func() bool { return src.Stats().Pending == 0 })
	relaytest.CheckDelivered(t, msgs, src.Published())
}

// Each Publish call (a wave) carries at most one message per key, and a key's next message
// goes out only after the previous one was acknowledged; unkeyed messages go together. A
// failed message stops its key for the rest of the batch: its later messages are released
// untouched, and follow it after its backoff.
func TestWaves(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	sk.Script(relaytest.Rule{Key: "k1", Attempt: 1, Times: 1, Err: errors.New("flaky")})
	msgs := relaytest.Messages(3, 0, 3)
	for range 3 {
		msgs = append(msgs, outbox.Message{Topic: "test.orders", Payload: []byte("unkeyed")})
	}
	src.Enqueue(msgs...)
	batches := &batchLog{sink: sk}
	run(t, src, sk, relay.Config{Workers: 1, Hooks: []relay.Hook{batches}})
	relaytest.WaitFor(t, 10*time.Second, "every message", func() bool { return src.Stats().Pending == 0 })

	calls := sk.Calls()
	for i, c := range calls {
		keys := map[string]bool{}
		for _, r := range c.Records {
			if r.Key != "" && keys[r.Key] {
				t.Errorf("call %d carries two messages of key %s: %v", i, r.Key, payloadsOf(c.Records))
			}
			keys[r.Key] = true
		}
	}
	first := batches.get()[0]
	want := [][]string{
		{"k0:0", "k1:0", "k2:0", "unkeyed", "unkeyed", "unkeyed"},
		{"k0:1", "k2:1"}, // k1 stopped at its failure
		{"k0:2", "k2:2"},
	}
	if first.calls != len(want) {
		t.Fatalf("the first batch took %d calls, want %d: %v", first.calls, len(want), calls)
	}
	for i, w := range want {
		if got := payloadsOf(calls[i].Records); !slices.Equal(got, w) {
			t.Errorf("wave %d = %v, want %v", i+1, got, w)
		}
	}
	if o := first.outcome; len(o.Published) != 9 || len(o.Retry) != 1 || o.Retry[0].Error != "flaky" {
		t.Errorf("first batch's outcome %+v, want 9 published and k1:0 retried", o)
	}
	relaytest.CheckDelivered(t, msgs, src.Published())
	relaytest.CheckOrder(t, sk.Acked())
	for _, r := range src.PublishedByKey()["k1"] {
		if want := map[string]int{"k1:0": 1}[string(r.Payload)]; r.Attempts != want {
			t.Errorf("%s published after %d failed attempts, want %d (released untouched behind its head)", r.Payload, r.Attempts, want)
		}
	}
}

// batchLog is a hook that records each batch's outcome and how many Publish calls the sink
// had answered by then.
type batchLog struct {
	sink *relaytest.Sink
	mu   sync.Mutex
	log  []finishedBatch
}

type finishedBatch struct {
	calls   int
	outcome outbox.Outcome
	err     error
}

func (b *batchLog) OnBatchFinished(_ []outbox.Record, o outbox.Outcome, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	prev := 0
	for _, f := range b.log {
		prev += f.calls
	}
	b.log = append(b.log, finishedBatch{calls: len(b.sink.Calls()) - prev, outcome: o, err: err})
}

func (b *batchLog) get() []finishedBatch {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.log)
}

func payloadsOf(recs []outbox.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = string(r.Payload)
	}
	return out
}

// The retry's backoff is kept by the source: a relay started after the failing one honours
// it, and sees the attempt already spent.
func TestBackoffPersistsAcrossRestart(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	failing := relaytest.NewSink()
	failing.Script(relaytest.Rule{Err: errors.New("broker down")})
	stop := run(t, src, failing, relay.Config{BackoffBase: time.Hour, BackoffMax: 2 * time.Hour})
	rec := src.Enqueue(outbox.Message{Topic: "t", Key: "a"})[0]
	var p relaytest.Pending
	relaytest.WaitFor(t, 10*time.Second, "first failed attempt", func() bool {
		p, _ = src.Get(rec.Seq)
		return p.Attempts == 1 && !p.Held
	})
	stop()
	if p.LastError != "broker down" {
		t.Fatalf("last error = %q, want broker down", p.LastError)
	}
	// Full jitter may draw ~0; pin a known future schedule to test the restart honours it.
	available := time.Now().Add(200 * time.Millisecond)
	src.Reschedule(rec.Seq, available)
	ok := relaytest.NewSink()
	run(t, src, ok, relay.Config{})
	relaytest.WaitFor(t, 10*time.Second, "retry after backoff", func() bool { return ok.Unique() == 1 })
	if at := ok.Calls()[0].Start; at.Before(available) {
		t.Fatalf("published at %v, before its available time %v", at, available)
	}
	if got := ok.Acked(); got[0].Attempts != 1 {
		t.Fatalf("attempts seen by the new relay = %d, want 1", got[0].Attempts)
	}
}

func TestDeadLetterAfterMaxAttemptsThenRetry(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	var broken atomic.Bool
	broken.Store(true)
	sk.Script(relaytest.Rule{Key: "poison", Match: func(*outbox.Record) bool { return broken.Load() },
		Err: errors.New("rejected by broker")})
	run(t, src, sk, relay.Config{Workers: 2, MaxAttempts: 3})
	src.Enqueue(
		outbox.Message{Topic: "t", Key: "poison", Payload: []byte("poison:0")},
		outbox.Message{Topic: "t", Key: "poison", Payload: []byte("poison:1")},
		outbox.Message{Topic: "t", Key: "fine", Payload: []byte("fine:0")},
	)
	relaytest.WaitFor(t, 20*time.Second, "two dead letters", func() bool {
		st := src.Stats()
		return st.DeadLetters == 2 && st.Pending == 0
	})
	for _, d := range src.DeadLetters() {
		if d.Record.Attempts != 3 || d.Reason != "after 3 attempts: rejected by broker" {
			t.Fatalf("dead letter = attempts %d, error %q", d.Record.Attempts, d.Reason)
		}
	}
	if sk.Unique() != 1 {
		t.Fatalf("delivered %d, want only the healthy key's message", sk.Unique())
	}
	broken.Store(false)
	if n := src.RetryDeadLetters(); n != 2 {
		t.Fatalf("RetryDeadLetters = %d", n)
	}
	relaytest.WaitFor(t, 10*time.Second, "retried dead letters", func() bool { return sk.Unique() == 3 })
	relaytest.CheckOrder(t, sk.Acked())
}

func TestPermanentErrorDeadLettersAtOnce(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	sk.Script(relaytest.Rule{Fail: func(r *outbox.Record) error {
		if len(r.Payload) > 3 {
			return sink.Permanentf("payload of %d bytes exceeds the broker's limit", len(r.Payload))
		}
		return nil
	}})
	run(t, src, sk, relay.Config{Workers: 2})
	src.Enqueue(outbox.Message{Topic: "t", Key: "a", Payload: []byte("toolarge")}, outbox.Message{Topic: "t", Key: "a", Payload: []byte("ok")})
	// The dead letter is written with the batch's Finish, after the next message was published.
	relaytest.WaitFor(t, 10*time.Second, "the next message of the key and the dead letter", func() bool {
		return sk.Unique() == 1 && src.Stats().DeadLetters == 1
	})
	dls := src.DeadLetters()
	if len(dls) != 1 || dls[0].Record.Attempts != 1 || dls[0].Reason != "payload of 8 bytes exceeds the broker's limit" {
		t.Fatalf("dead letters = %+v", dls)
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{BatchSize: 10})
	sk := relaytest.NewSink()
	slow := sk.Script(relaytest.Rule{Delay: 300 * time.Millisecond})
	msgs := relaytest.Messages(10, 0, 5)
	src.Enqueue(msgs...)
	stop := run(t, src, sk, relay.Config{Workers: 2})
	relaytest.WaitFor(t, 10*time.Second, "a batch in flight", func() bool { return sk.Started() > 0 })
	stop()
	delivered := sk.Unique()
	if delivered == 0 {
		t.Fatal("in-flight batch was not finished on shutdown")
	}
	st := src.Stats()
	if st.Pending+delivered != len(msgs) || st.Held != 0 {
		t.Fatalf("after shutdown: %d delivered + %d pending (%d held) != %d enqueued", delivered, st.Pending, st.Held, len(msgs))
	}
	// Nothing is left held or half-done: a new relay delivers the rest.
	slow()
	run(t, src, sk, relay.Config{})
	relaytest.WaitFor(t, 20*time.Second, "the rest", func() bool { return sk.Unique() == len(msgs) })
}

func TestShutdownDeadlineReleasesUnacknowledged(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	sk.Script(relaytest.Rule{Block: make(chan struct{})}) // a broker that never answers
	src.Enqueue(relaytest.Messages(3, 0, 1)...)
	stop := run(t, src, sk, relay.Config{Workers: 2, ShutdownTimeout: 200 * time.Millisecond})
	relaytest.WaitFor(t, 10*time.Second, "a batch in flight", func() bool { return sk.Started() > 0 })
	start := time.Now()
	stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v with a 200ms deadline", d)
	}
	st := src.Stats()
	if st.Pending != 3 || st.Held != 0 || attemptsSpent(src) != 0 {
		t.Fatalf("after shutdown: %d messages (%d held) with %d attempts, want 3 released unchanged", st.Pending, st.Held, attemptsSpent(src))
	}
}

// failPublishedFinishes makes the first n Finish calls that record published messages fail,
// as when the claim's session is killed between the publish and the delete.
func failPublishedFinishes(src *relaytest.Source, n int32) {
	var failed atomic.Int32
	src.SetFinishError(func(o outbox.Outcome) error {
		if len(o.Published) > 0 && failed.Add(1) <= n {
			return errors.New("the claim's session was killed (test)")
		}
		return nil
	})
}

// TestUnrecordedOutcomeNotPublishedAgain: Finish fails after the publish (the claim's
// transaction died), so the messages come back unchanged; the relay remembers what it
// published and records it without publishing it again.
func TestUnrecordedOutcomeNotPublishedAgain(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	failPublishedFinishes(src, 3)
	msgs := relaytest.Messages(5, 0, 4)
	src.Enqueue(msgs...)
	run(t, src, sk, relay.Config{Workers: 2})
	relaytest.WaitFor(t, 30*time.Second, "all messages and an empty backlog", func() bool {
		return sk.Unique() == len(msgs) && src.Stats().Pending == 0
	})
	if st := src.Stats(); st.FailedFinishes < 3 {
		t.Fatalf("%d failed finishes, want the 3 scripted", st.FailedFinishes)
	}
	if dups := sk.Duplicates(); dups != 0 {
		t.Fatalf("%d duplicates after Finish failed: the relay published again what it had published", dups)
	}
	relaytest.CheckOrder(t, sk.Acked())
	relaytest.CheckDelivered(t, msgs, src.Published())
}

// finishCounter counts the batches the relay finished, and those whose Finish failed.
type finishCounter struct{ ok, failed atomic.Int64 }

func (f *finishCounter) OnBatchFinished(_ []outbox.Record, _ outbox.Outcome, err error) {
	if err != nil {
		f.failed.Add(1)
	} else {
		f.ok.Add(1)
	}
}

// TestNoRepublishStormWhenDeadLetteringFails: the dead-letter table refuses inserts, so no
// batch holding the unroutable message can be finished. The relay must neither publish the
// routable messages again and again (it did, thousands of times in seconds) nor retry the
// Finish without backing off; once the table accepts inserts again, everything is recorded,
// and every message was published once.
func TestNoRepublishStormWhenDeadLetteringFails(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	src.SetFinishError(func(o outbox.Outcome) error {
		if len(o.Dead) > 0 {
			return errors.New("dead letters refused (test)")
		}
		return nil
	})
	sk := relaytest.NewSink()
	rt, err := route.New([]route.Route{{Pattern: "orders.*", Name: "orders", Sink: sk}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []outbox.Message
	for i := range 5 {
		msgs = append(msgs, outbox.Message{Topic: "orders.created", Key: fmt.Sprint("k", i), Payload: []byte("k:0")})
	}
	msgs = append(msgs, outbox.Message{Topic: "nowhere", Key: "x"})
	src.Enqueue(msgs...)
	fc := &finishCounter{}
	logs := &logtest.Recorder{}
	run(t, src, rt, relay.Config{Workers: 1, Hooks: []relay.Hook{fc}, Logger: slog.New(logs)})
	time.Sleep(4 * time.Second)

	count := sk.Counts()
	for id, n := range count {
		if n > 1 {
			t.Errorf("message %s published %d times while its outcome could not be recorded", id, n)
		}
	}
	if len(count) != 5 {
		t.Errorf("%d messages published, want the 5 routable ones", len(count))
	}
	// Backing off from 100ms, doubling: about 6 tries in 4s (a storm made thousands).
	if n := fc.failed.Load(); n < 2 || n > 20 {
		t.Errorf("%d failed finishes in 4s, want a few (backing off); logs: %q", n, logs.Msgs())
	}
	if !logs.Has("WARN recording the outcome of a batch failed") {
		t.Errorf("the failing Finish was not logged; logs: %q", logs.Msgs())
	}
	if p := src.Stats().Pending; p != 6 {
		t.Errorf("%d pending while nothing could be recorded, want 6", p)
	}

	src.SetFinishError(nil)
	// The worker logs the recovery after the Finish was recorded: wait for both.
	relaytest.WaitFor(t, 30*time.Second, "an empty backlog, the dead letter and the recovery logged", func() bool {
		st := src.Stats()
		return st.Pending == 0 && st.DeadLetters == 1 && logs.Has("INFO recording batch outcomes works again")
	})
	for id, n := range sk.Counts() {
		if n != 1 {
			t.Errorf("message %s published %d times, want once", id, n)
		}
	}
}

// unavailableWhile scripts sk to fail every message with a sink-wide error while down is set.
func unavailableWhile(sk *relaytest.Sink, down *atomic.Bool) {
	sk.Script(relaytest.Rule{Match: func(*outbox.Record) bool { return down.Load() },
		Err: sink.Unavailable(errors.New("connection refused (test)"))})
}

// TestOutageLongerThanRetryBudgetDeadLettersNothing: with max_attempts 3 and a backoff whose
// whole budget is well under a second, the sink is unavailable for 20 times that budget.
// Nothing may be dead-lettered or spend attempts; everything is delivered in order after the
// recovery; and the relay probes the sink instead of hammering it.
func TestOutageLongerThanRetryBudgetDeadLettersNothing(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	var down atomic.Bool
	down.Store(true)
	unavailableWhile(sk, &down)
	logs := &logtest.Recorder{}
	// Retry budget: 3 attempts, backoff ≤ 50ms each: ~150ms. The outage: 3s, 20×.
	run(t, src, sk, relay.Config{Workers: 2, MaxAttempts: 3,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		MaxProbeInterval: time.Second, Logger: slog.New(logs)})
	msgs := relaytest.Messages(10, 0, 5)
	src.Enqueue(msgs...)
	time.Sleep(3 * time.Second)

	if dead, attempts := src.Stats().DeadLetters, attemptsSpent(src); dead != 0 || attempts != 0 {
		t.Fatalf("during the outage: %d dead letters, %d attempts spent; want none", dead, attempts)
	}
	// Probes: at most one per second per worker once the pause grew (1s cap): a few in 3s.
	if c := sk.Started(); c > 20 {
		t.Errorf("%d publish calls during a 3s outage, want a few probes", c)
	}
	if !logs.Has("WARN sink unavailable; pausing it") {
		t.Errorf("the outage was not logged; logs: %q", logs.Msgs())
	}

	down.Store(false)
	relaytest.WaitFor(t, 20*time.Second, "every message after the recovery", func() bool {
		return sk.Unique() == len(msgs) && src.Stats().Pending == 0
	})
	relaytest.CheckOrder(t, sk.Acked())
	if st := src.Stats(); st.DeadLetters != 0 {
		t.Fatalf("after the outage: %+v", st)
	}
	if !logs.Has("INFO sink available again") {
		t.Errorf("the recovery was not logged; logs: %q", logs.Msgs())
	}
}

// TestUnavailableRouteDoesNotHoldOthers: with two routes, one sink unavailable: the other's
// topics flow, the unavailable one's messages keep their attempts and follow after it is back.
func TestUnavailableRouteDoesNotHoldOthers(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	down := relaytest.NewSink()
	var isDown atomic.Bool
	isDown.Store(true)
	unavailableWhile(down, &isDown)
	up := relaytest.NewSink()
	rt, err := route.New([]route.Route{
		{Pattern: "a.>", Name: "down", Sink: down},
		{Pattern: "b.>", Name: "up", Sink: up},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, src, rt, relay.Config{Workers: 2, MaxAttempts: 2,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, MaxProbeInterval: time.Second})
	var msgs []outbox.Message
	for i := range 20 {
		topic := "a.x"
		if i%2 == 1 {
			topic = "b.x"
		}
		msgs = append(msgs, outbox.Message{Topic: topic, Key: fmt.Sprint("k", i%4), Payload: fmt.Appendf(nil, "k%d:%d", i%4, i/4)})
	}
	src.Enqueue(msgs...)
	// Keys k1 and k3 carry only b.x messages: they flow although a.x is down.
	relaytest.WaitFor(t, 10*time.Second, "the other route's messages", func() bool { return up.Unique() == 10 })
	time.Sleep(time.Second)
	if dead, attempts := src.Stats().DeadLetters, attemptsSpent(src); dead != 0 || attempts != 0 {
		t.Fatalf("with one route down: %d dead letters, %d attempts; want no dead letters, no attempts spent", dead, attempts)
	}
	isDown.Store(false)
	relaytest.WaitFor(t, 20*time.Second, "the recovered route's messages", func() bool {
		return down.Unique() == 10 && src.Stats().Pending == 0
	})
}

// TestRetryingFailuresAreLogged: a retryable failure is logged at WARN when it starts (with
// sink, topic and error), summarised while it lasts, and logged when it clears.
func TestRetryingFailuresAreLogged(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	var failing atomic.Bool
	failing.Store(true)
	sk.Script(relaytest.Rule{Match: func(*outbox.Record) bool { return failing.Load() },
		Err: errors.New("stream not writable (test)")})
	logs := &logtest.Recorder{}
	run(t, src, sk, relay.Config{Workers: 2, SinkName: "nats",
		BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, MaxAttempts: 1000,
		FailureSummaryInterval: 300 * time.Millisecond, Logger: slog.New(logs)})
	src.Enqueue(outbox.Message{Topic: "orders.created", Key: "k"})
	relaytest.WaitFor(t, 10*time.Second, "the summary", func() bool { return logs.Has("WARN publishing still failing") })
	failing.Store(false)
	relaytest.WaitFor(t, 10*time.Second, "the delivery", func() bool { return sk.Unique() == 1 })
	// The topic recovers when it publishes after an interval without failures.
	var lastFailure time.Time
	for _, c := range sk.Calls() {
		if slices.ContainsFunc(c.Results, func(err error) bool { return err != nil }) {
			lastFailure = c.End
		}
	}
	time.Sleep(time.Until(lastFailure.Add(300*time.Millisecond + 50*time.Millisecond)))
	src.Enqueue(outbox.Message{Topic: "orders.created", Key: "k2"})
	relaytest.WaitFor(t, 10*time.Second, "the recovery line", func() bool { return logs.Has("INFO publishing recovered") })
	starts := 0
	for _, m := range logs.Msgs() {
		if strings.HasPrefix(m, "WARN publishing failed;") {
			starts++
			for _, want := range []string{"sink=nats", "topic=orders.created", "stream not writable (test)"} {
				if !strings.Contains(m, want) {
					t.Errorf("start line %q lacks %q", m, want)
				}
			}
		}
	}
	if starts != 1 {
		t.Errorf("%d start lines for one lasting failure, want 1", starts)
	}
}

func TestFewerWorkersThanSlotsRefused(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{Concurrency: 3})
	_, err := relay.New(relay.Config{Source: src, Sink: relaytest.NewSink(), Workers: 1})
	var ce *outbox.ConfigError
	if !errors.Is(err, outbox.ErrInvalidConfig) || !errors.As(err, &ce) || ce.Field != "workers" {
		t.Fatalf("relay.New(1 worker, 3 slots) = %v, want a ConfigError on workers", err)
	}
	if r, err := relay.New(relay.Config{Source: src, Sink: relaytest.NewSink()}); err != nil || r == nil {
		t.Fatalf("relay.New with the source's concurrency as default: %v", err)
	}
}

// Errors are stored whatever bytes the broker sent back: NUL bytes and broken UTF-8 must not
// make the store refuse the outcome (which would loop the batch forever; relaytest's source
// refuses them as PostgreSQL does).
func TestUnstorableErrorTextIsSanitised(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	sk.Script(relaytest.Rule{Err: errors.New("broker said \x00\xff\xfe " + strings.Repeat("é", 1500))})
	run(t, src, sk, relay.Config{Workers: 2, MaxAttempts: 2})
	src.Enqueue(outbox.Message{Topic: "t", Key: "k"})
	relaytest.WaitFor(t, 10*time.Second, "the dead letter", func() bool { return src.Stats().DeadLetters == 1 })
	dls := src.DeadLetters()
	if len(dls) != 1 || !strings.HasPrefix(dls[0].Reason, "after 2 attempts: broker said") || len(dls[0].Reason) > 2000+len("…") {
		t.Fatalf("dead letters = %+v", dls)
	}
	if st := src.Stats(); st.FailedFinishes != 0 {
		t.Fatalf("%d outcomes refused", st.FailedFinishes)
	}
}

// A sink's Retry-After is honoured: the retry is scheduled no sooner than it asks.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	sk.Script(relaytest.Rule{Err: errors.New("429 too many requests"), RetryAfter: 30 * time.Minute})
	run(t, src, sk, relay.Config{Workers: 2, BackoffBase: time.Millisecond, BackoffMax: time.Hour})
	rec := src.Enqueue(outbox.Message{Topic: "t", Key: "k"})[0]
	var p relaytest.Pending
	relaytest.WaitFor(t, 10*time.Second, "the first attempt", func() bool {
		p, _ = src.Get(rec.Seq)
		return p.Attempts == 1
	})
	if wait := time.Until(p.AvailableAt); wait < 29*time.Minute {
		t.Fatalf("retry scheduled in %v, want at least the 30m the sink asked for", wait)
	}
}

// Broker-reported duplicates count as delivered, are reported to the source and logged with
// the message's id.
func TestBrokerDuplicatesCountedAndLogged(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	sk.Script(relaytest.Rule{Key: "dup", Err: sink.Duplicate("stream ORDERS, sequence 42")})
	logs := &logtest.Recorder{}
	run(t, src, sk, relay.Config{Logger: slog.New(logs)})
	recs := src.Enqueue(outbox.Message{Topic: "t", Key: "dup"}, outbox.Message{Topic: "t", Key: "k"})
	relaytest.WaitFor(t, 10*time.Second, "both recorded", func() bool { return src.Stats().Pending == 0 })
	if st := src.Stats(); st.Published != 2 || st.Duplicates != 1 || st.Retries != 0 {
		t.Fatalf("stats %+v, want 2 published, 1 of them a duplicate", st)
	}
	if !logs.Has("WARN broker acknowledged the message as a duplicate") ||
		!strings.Contains(strings.Join(logs.Msgs(), "\n"), "message_id="+recs[0].ID.String()) {
		t.Fatalf("the duplicate was not logged with its id; logs: %q", logs.Msgs())
	}
}

// Hooks are called through the interfaces they implement; a hook implementing none (an
// Observer of old, a typo) is refused.
func TestHooks(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	for i, hooks := range [][]relay.Hook{{nil}, {struct{}{}}, {&finishCounter{}, oldObserver{}}} {
		_, err := relay.New(relay.Config{Source: src, Sink: sk, Hooks: hooks})
		var ce *outbox.ConfigError
		if want := fmt.Sprintf("hooks[%d]", len(hooks)-1); !errors.As(err, &ce) || ce.Field != want {
			t.Errorf("case %d: relay.New = %v, want a ConfigError on %s", i, err, want)
		}
	}
	var once atomic.Bool
	src.SetFinishError(func(outbox.Outcome) error {
		if once.CompareAndSwap(false, true) {
			return errors.New("refused once (test)")
		}
		return nil
	})
	a, b := &batchLog{sink: sk}, &finishCounter{}
	run(t, src, sk, relay.Config{Hooks: []relay.Hook{a, b}})
	src.Enqueue(outbox.Message{Topic: "t", Key: "k"})
	relaytest.WaitFor(t, 10*time.Second, "the batch recorded", func() bool { return b.ok.Load() == 1 })
	log := a.get()
	if len(log) != 2 || log[0].err == nil || log[1].err != nil || b.failed.Load() != 1 ||
		len(log[0].outcome.Published) != 1 || len(log[1].outcome.Published) != 1 {
		t.Fatalf("hook calls %+v, counter %d ok %d failed", log, b.ok.Load(), b.failed.Load())
	}
}

// oldObserver has the method relay.Observer had: it is no hook.
type oldObserver struct{}

func (oldObserver) BatchFinished([]outbox.Record, outbox.Outcome, error) {}

// recordingSource is a relaytest.Source that is also a relay.Recorder: it notes what the
// relay asks it to record and answers with err, recording nothing (as if claims held
// every row).
type recordingSource struct {
	*relaytest.Source
	err   error
	mu    sync.Mutex
	calls int
	refs  map[int64]uuid.UUID
}

func (s *recordingSource) RecordPublished(_ context.Context, refs []relay.Ref) ([]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	for _, r := range refs {
		s.refs[r.Seq] = r.ID
	}
	return nil, s.err
}

// TestUnrecordedOutcomeRecordedBySource: with a source that can record outside a claim
// (relay.Recorder), the relay hands it the published messages whose Finish failed, at once,
// by sequence number and message id; what it could not record is still applied when the
// messages come back, without publishing them again. A source that cannot record
// (errors.ErrUnsupported) is asked once.
func TestUnrecordedOutcomeRecordedBySource(t *testing.T) {
	t.Parallel()
	for _, unsupported := range []bool{false, true} {
		src := &recordingSource{Source: relaytest.NewSource(relaytest.SourceConfig{}), refs: map[int64]uuid.UUID{}}
		if unsupported {
			src.err = fmt.Errorf("no recorder: %w", errors.ErrUnsupported)
		}
		sk := relaytest.NewSink()
		failPublishedFinishes(src.Source, 3)
		msgs := relaytest.Messages(5, 0, 4)
		src.Enqueue(msgs...)
		stop := run(t, src, sk, relay.Config{Workers: 2})
		relaytest.WaitFor(t, 30*time.Second, "all messages and an empty backlog", func() bool {
			return sk.Unique() == len(msgs) && src.Stats().Pending == 0
		})
		stop()
		if dups := sk.Duplicates(); dups != 0 {
			t.Fatalf("%d duplicates after Finish failed", dups)
		}
		src.mu.Lock()
		calls, refs := src.calls, src.refs
		src.mu.Unlock()
		switch {
		case unsupported && calls != 1:
			t.Fatalf("a source that cannot record was asked %d times, want once", calls)
		case !unsupported && calls == 0:
			t.Fatal("the relay never asked the source to record the unrecorded messages")
		}
		acked := map[int64]uuid.UUID{}
		for _, r := range sk.Acked() {
			acked[r.Seq] = r.ID
		}
		for seq, id := range refs {
			if acked[seq] != id {
				t.Errorf("asked to record message %d (%s), which the sink did not acknowledge as such", seq, id)
			}
		}
	}
}
