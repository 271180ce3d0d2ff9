package sourcetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/sink"
)

// Source is what the scenarios need of a source under test (Crash is the sources' test hook,
// exported to their tests).
type Source interface {
	relay.Source
	Setup(ctx context.Context) error
	Crash()
}

// Env is one test's outbox (its own schema or database, its own slot or saved position) as
// the scenarios use it.
type Env[S Source] struct {
	// NewSource returns a new source on the outbox with the test configuration.
	NewSource func() S
	// Commit enqueues msgs in one transaction.
	Commit func(tb testing.TB, msgs ...outbox.Message)
}

// produce commits Messages(keys, from, perKey), perTx per transaction, and returns how many.
func (env Env[S]) produce(tb testing.TB, keys, from, perKey, perTx int) int {
	tb.Helper()
	return len(Produce(tb, keys, from, perKey, perTx, env.Commit))
}

// Await waits up to d for n distinct deliveries (what names the wait), checks the per-key
// order of the first deliveries, and returns the number of duplicates.
func (s *Sink) Await(tb testing.TB, d time.Duration, what string, n int) (dups int) {
	tb.Helper()
	WaitFor(tb, d, what, func() bool { return s.Unique() == n })
	delivered, _ := s.Snapshot()
	return CheckOrder(tb, delivered)
}

// AwaitOnce waits up to d for all n messages, and checks that each was delivered once, first
// deliveries in per-key order. It returns the deliveries.
func (s *Sink) AwaitOnce(tb testing.TB, d time.Duration, n int) []outbox.Record {
	tb.Helper()
	WaitFor(tb, d, "all messages", func() bool { return s.Unique() == n })
	delivered, count := s.Snapshot()
	if dups := CheckOrder(tb, delivered); dups != 0 {
		tb.Errorf("%d duplicates in the happy path", dups)
	}
	for _, c := range count {
		if c != 1 {
			tb.Fatalf("a message was delivered %d times", c)
		}
	}
	return delivered
}

// RestartResumes stops a relay mid-stream and starts another source on the same outbox: it
// must resume from the position the first one kept, lose nothing, keep per-key order, and
// send little again (the transactions only partly published at the stop: with per-key
// parallelism the keys run at most a few batches, of up to 8 messages per key, apart).
// stopped, called after the stop, checks and describes the kept position.
func RestartResumes[S Source](t *testing.T, env Env[S], stopped func(first S) (position string)) {
	t.Helper()
	sk := NewSink()
	sk.Delay.Store(int64(2 * time.Millisecond))
	src1 := env.NewSource()
	if err := src1.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := env.produce(t, 10, 0, 50, 10)
	r1 := StartRelay(t, src1, sk, relay.Config{})
	WaitFor(t, 30*time.Second, "some deliveries", func() bool { return sk.Unique() >= 100 })
	if err := r1.Stop(); err != nil {
		t.Fatal(err)
	}
	before := sk.Unique()
	at := stopped(src1)
	n += env.produce(t, 10, 50, 20, 10)
	StartRelay(t, env.NewSource(), sk, relay.Config{})
	dups := sk.Await(t, 60*time.Second, "all messages", n)
	t.Logf("stopped after %d of %d (at %s); %d duplicates after the restart", before, n, at, dups)
	if dups >= before || dups > 150 {
		t.Errorf("%d of %d messages sent again after a graceful stop", dups, before)
	}
}

// CrashRestart kills a source mid-stream (connections dropped abruptly, no final position
// kept, pending deletes abandoned) and starts another on the same outbox: nothing may be
// lost, and not everything sent again (the position kept before the crash counts).
func CrashRestart[S Source](t *testing.T, env Env[S]) {
	t.Helper()
	sk := NewSink()
	sk.Delay.Store(int64(5 * time.Millisecond))
	src1 := env.NewSource()
	if err := src1.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := env.produce(t, 10, 0, 60, 20)
	r1 := StartRelay(t, src1, sk, relay.Config{})
	WaitFor(t, 30*time.Second, "some deliveries", func() bool { return sk.Unique() >= 150 })
	time.Sleep(4 * 50 * time.Millisecond) // a few position updates keep part of it
	src1.Crash()
	select {
	case <-r1.Done:
	case <-time.After(30 * time.Second):
		t.Fatal("relay did not stop after the crash")
	}
	before := sk.Unique()
	n += env.produce(t, 10, 60, 10, 20)
	StartRelay(t, env.NewSource(), sk, relay.Config{})
	dups := sk.Await(t, 60*time.Second, "all messages", n)
	t.Logf("crashed after %d of %d; %d duplicates", before, n, dups)
	if dups >= before {
		t.Errorf("everything (%d) was sent again: no position was kept before the crash", dups)
	}
}

// LargeTransaction starts a relay over src, whose outbox holds one committed transaction of n
// messages (more than the source's MaxInFlight, maxInFlight), with the sink stalled: the
// source must read up to MaxInFlight and stop there, instead of buffering the transaction;
// then deliver everything in order, never holding more than MaxInFlight. stats reads the
// source's pending messages, their peak, and its whole stats for the test's log.
func LargeTransaction(t *testing.T, src relay.Source, stats func() (pending, peak int, all any), n, maxInFlight int) {
	t.Helper()
	sk := NewSink()
	sk.Gate = make(chan struct{})
	StartRelay(t, src, sk, relay.Config{})
	pending := func() int { p, _, _ := stats(); return p }
	WaitFor(t, 2*time.Minute, "the source to fill up", func() bool { return pending() == maxInFlight })
	time.Sleep(300 * time.Millisecond)
	if p := pending(); p != maxInFlight {
		t.Fatalf("pending = %d while the sink is stalled, want it to stay at %d", p, maxInFlight)
	}
	close(sk.Gate)
	sk.Await(t, 5*time.Minute, "all messages", n)
	_, peak, all := stats()
	t.Logf("stats: %+v", all)
	if peak > maxInFlight {
		t.Fatalf("the source held %d messages, more than MaxInFlight %d", peak, maxInFlight)
	}
}

// ConfigErrors checks that newSource accepts good, and rejects each case's Edit of it with an
// outbox.ConfigError naming the case's Field.
func ConfigErrors[C, S any](t *testing.T, newSource func(C) (S, error), good C, cases []struct {
	Field string
	Edit  func(*C)
}) {
	t.Helper()
	if _, err := newSource(good); err != nil {
		t.Fatalf("a minimal config fails: %v", err)
	}
	for _, tt := range cases {
		cfg := good
		tt.Edit(&cfg)
		_, err := newSource(cfg)
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.Field || !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("%s: err = %v, want a ConfigError for %s", tt.Field, err, tt.Field)
		}
	}
}

// OutcomeWriteFails runs a relay over a source on an outbox whose dead-letter table refuses
// inserts (refuse installs that, accept removes it): five messages are published and one is
// rejected permanently by the sink. While the dead letter cannot be written, no message may
// be published again (the acknowledged ones are kept, not resent) and the source must back
// off from the failing write, logging it (logs records the source's log); once the table
// accepts inserts again, the dead letter is written and nothing stays pending.
func OutcomeWriteFails[S Source](t *testing.T, env Env[S], logs *logtest.Recorder, pending func() int,
	deadLetters func() int, refuse, accept func(tb testing.TB)) {
	t.Helper()
	refuse(t)
	sk := NewSink()
	sk.Fail = func(r *outbox.Record) error {
		if r.Key == "poison" {
			return sink.Permanentf("rejected (test)")
		}
		return nil
	}
	src := env.NewSource()
	StartRelay(t, src, sk, relay.Config{})
	msgs := Messages(5, 0, 1)
	msgs = append(msgs, outbox.Message{Topic: "test.orders", Key: "poison", Payload: []byte("poison:0")})
	env.Commit(t, msgs...)
	WaitFor(t, 30*time.Second, "the five deliveries", func() bool { return sk.Unique() == 5 })
	time.Sleep(3 * time.Second)
	_, count := sk.Snapshot()
	for id, n := range count {
		if n > 1 {
			t.Errorf("message %s published %d times while the outcome could not be written", id, n)
		}
	}
	failures := 0
	for _, m := range logs.Msgs() {
		if strings.Contains(m, "failed") && strings.Contains(m, "retry") {
			failures++
		}
	}
	// Backing off from 100ms (doubling, jittered): a handful of attempts in 3s.
	if failures < 2 || failures > 25 {
		t.Errorf("%d logged failures of the outcome write in 3s, want a few (backing off); logs: %q", failures, logs.Msgs())
	}
	if deadLetters() != 0 {
		t.Fatal("a dead letter was written although the table refuses inserts")
	}
	accept(t)
	WaitFor(t, 30*time.Second, "the dead letter, nothing pending", func() bool { return deadLetters() == 1 && pending() == 0 })
	_, count = sk.Snapshot()
	for id, n := range count {
		if n != 1 {
			t.Errorf("message %s published %d times, want once", id, n)
		}
	}
}
