package relay_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/internal/sourcetest"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/route"
)

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
	b := setup(t)
	ctx := context.Background()
	schema := b.table[:len(b.table)-len(".outbox")]
	_, err := b.pool.Exec(ctx, `
CREATE FUNCTION `+schema+`.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'dead letters refused (test)'; END $$;
CREATE TRIGGER refuse BEFORE INSERT ON `+b.table+`_dead FOR EACH ROW EXECUTE FUNCTION `+schema+`.refuse()`)
	if err != nil {
		t.Fatal(err)
	}
	sk := sourcetest.NewSink()
	rt, err := route.New([]route.Route{{Pattern: "orders.*", Name: "orders", Sink: sk}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []outbox.Message
	for i := range 5 {
		msgs = append(msgs, outbox.Message{Topic: "orders.created", Key: fmt.Sprint("k", i), Payload: []byte("k:0")})
	}
	msgs = append(msgs, outbox.Message{Topic: "nowhere", Key: "x"})
	if err := b.store.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	fc := &finishCounter{}
	logs := &sourcetest.LogRecorder{}
	startRelay(t, b, rt, poll.Config{Workers: 1}, relay.Config{Hooks: []relay.Hook{fc}, Logger: slog.New(logs)})
	time.Sleep(4 * time.Second)

	_, count := sk.Snapshot()
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
	if p := pending(t, b); p != 6 {
		t.Errorf("%d pending while nothing could be recorded, want 6", p)
	}

	if _, err := b.pool.Exec(ctx, `DROP TRIGGER refuse ON `+b.table+`_dead`); err != nil {
		t.Fatal(err)
	}
	// The worker logs the recovery after the Finish committed: wait for both.
	waitFor(t, 30*time.Second, "an empty outbox, the dead letter and the recovery logged", func() bool {
		st, err := b.store.Stats(ctx)
		return err == nil && st.Pending == 0 && st.DeadLetters == 1 && logs.Has("INFO recording batch outcomes works again")
	})
	_, count = sk.Snapshot()
	for id, n := range count {
		if n != 1 {
			t.Errorf("message %s published %d times, want once", id, n)
		}
	}
}

// downSink is unavailable (sink-wide) while down is set, and counts its publish calls.
type downSink struct {
	*sourcetest.Sink
	down  atomic.Bool
	calls atomic.Int64
}

func (d *downSink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	d.calls.Add(1)
	if d.down.Load() {
		return sink.FailAll(len(msgs), sink.Unavailable(errors.New("connection refused (test)")))
	}
	return d.Sink.Publish(ctx, msgs)
}

// TestOutageLongerThanRetryBudgetDeadLettersNothing: with max_attempts 3 and a backoff whose
// whole budget is well under a second, the sink is unavailable for 20 times that budget.
// Nothing may be dead-lettered or spend attempts; everything is delivered in order after the
// recovery; and the relay probes the sink instead of hammering it.
func TestOutageLongerThanRetryBudgetDeadLettersNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	sk := &downSink{Sink: sourcetest.NewSink()}
	sk.down.Store(true)
	logs := &sourcetest.LogRecorder{}
	// Retry budget: 3 attempts, backoff ≤ 50ms each: ~150ms. The outage: 3s, 20×.
	startRelay(t, b, sk, poll.Config{}, relay.Config{MaxAttempts: 3,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		MaxProbeInterval: time.Second, Logger: slog.New(logs)})
	n := produce(t, b, 10, 5, 7)
	time.Sleep(3 * time.Second)

	var attempts, dead int64
	if err := b.pool.QueryRow(ctx, `SELECT coalesce(sum(attempts), 0) FROM `+b.table).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	st, err := b.store.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dead = st.DeadLetters
	if dead != 0 || attempts != 0 {
		t.Fatalf("during the outage: %d dead letters, %d attempts spent; want none", dead, attempts)
	}
	// Probes: at most one per second per worker once the pause grew (1s cap): a few in 3s.
	if c := sk.calls.Load(); c > 20 {
		t.Errorf("%d publish calls during a 3s outage, want a few probes", c)
	}
	if !logs.Has("WARN sink unavailable; pausing it") {
		t.Errorf("the outage was not logged; logs: %q", logs.Msgs())
	}

	sk.down.Store(false)
	waitFor(t, 20*time.Second, "every message after the recovery", func() bool { return sk.Unique() == n && pending(t, b) == 0 })
	delivered, _ := sk.Snapshot()
	checkOrder(t, delivered)
	if st, err := b.store.Stats(ctx); err != nil || st.DeadLetters != 0 {
		t.Fatalf("after the outage: %+v, %v", st, err)
	}
	if !logs.Has("INFO sink available again") {
		t.Errorf("the recovery was not logged; logs: %q", logs.Msgs())
	}
}

// TestUnavailableRouteDoesNotHoldOthers: with two routes, one sink unavailable: the other's
// topics flow, the unavailable one's messages keep their attempts and follow after it is back.
func TestUnavailableRouteDoesNotHoldOthers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	down := &downSink{Sink: sourcetest.NewSink()}
	down.down.Store(true)
	up := sourcetest.NewSink()
	rt, err := route.New([]route.Route{
		{Pattern: "a.>", Name: "down", Sink: down},
		{Pattern: "b.>", Name: "up", Sink: up},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	startRelay(t, b, rt, poll.Config{}, relay.Config{MaxAttempts: 2,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, MaxProbeInterval: time.Second})
	var msgs []outbox.Message
	for i := range 20 {
		topic := "a.x"
		if i%2 == 1 {
			topic = "b.x"
		}
		msgs = append(msgs, outbox.Message{Topic: topic, Key: fmt.Sprint("k", i%4), Payload: fmt.Appendf(nil, "k%d:%d", i%4, i/4)})
	}
	if err := b.store.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	// Keys k1 and k3 carry only b.x messages: they flow although a.x is down.
	waitFor(t, 10*time.Second, "the other route's messages", func() bool { return up.Unique() == 10 })
	time.Sleep(time.Second)
	var attempts int64
	if err := b.pool.QueryRow(ctx, `SELECT coalesce(sum(attempts), 0) FROM `+b.table).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if st, err := b.store.Stats(ctx); err != nil || st.DeadLetters != 0 || attempts != 0 {
		t.Fatalf("with one route down: %+v, %d attempts; want no dead letters, no attempts spent", st, attempts)
	}
	down.down.Store(false)
	waitFor(t, 20*time.Second, "the recovered route's messages", func() bool { return down.Unique() == 10 && pending(t, b) == 0 })
}

// TestRetryingFailuresAreLogged: a retryable failure is logged at WARN when it starts (with
// sink, topic and error), summarised while it lasts, and logged when it clears.
func TestRetryingFailuresAreLogged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := sourcetest.NewSink()
	var failing atomic.Bool
	failing.Store(true)
	sk.Fail = func(*outbox.Record) error {
		if failing.Load() {
			return errors.New("stream not writable (test)")
		}
		return nil
	}
	logs := &sourcetest.LogRecorder{}
	startRelay(t, b, sk, poll.Config{}, relay.Config{SinkName: "nats",
		BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, MaxAttempts: 1000,
		FailureSummaryInterval: 300 * time.Millisecond, Logger: slog.New(logs)})
	if err := b.store.Enqueue(context.Background(), outbox.Message{Topic: "orders.created", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the summary", func() bool { return logs.Has("WARN publishing still failing") })
	failing.Store(false)
	waitFor(t, 10*time.Second, "the delivery", func() bool { return sk.Unique() == 1 })
	if err := b.store.Enqueue(context.Background(), outbox.Message{Topic: "orders.created", Key: "k2"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the recovery line", func() bool { return logs.Has("INFO publishing recovered") })
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
