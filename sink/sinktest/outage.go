package sinktest

import (
	"context"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
)

// Outage describes how a test takes a sink's broker away and brings it back, for the outage
// cases Reconnect and StartWhileDown: a fault proxy between the sink and the broker that cuts
// and restores the connection, or an in-process broker that stops and restarts.
type Outage struct {
	// Sink is the sink under test, reaching its broker through what Cut interrupts.
	Sink sink.Sink
	// Timeout is the sink's publish timeout: every Publish must return within it (and a
	// second more), outage or not.
	Timeout time.Duration
	// Cut starts the outage; Restore ends it.
	Cut, Restore func()
	// Receiver, when set, is called after the outage and returns a reader of what Sink
	// published to FreshBatch's topic: Reconnect checks that every acknowledged message is
	// there, first copies in per-key order. Nil skips that check.
	Receiver func() Receiver
	// Stored, when set, is called after the outage and returns how many messages the
	// destination holds: exactly the acknowledged ones for a broker that drops republished
	// duplicates by message id.
	Stored func() int

	// Before is the batch published, and acknowledged whole, before the outage. Default 200.
	Before int
	// During, when set, is the batch in flight when the outage begins, CutAfter into it (0:
	// halfway through a batch of Before, timed): what Publish reported acknowledged must
	// survive, the rest must fail retryably. Unset, the outage begins between batches.
	During   int
	CutAfter time.Duration
	// Rounds batches of Down fresh messages are published during the outage (defaults 5 and
	// 50): no message may be acknowledged, every failure must be sink.Unavailable, and with
	// Prompt each Publish must fail within 500ms. With DownFor set, rounds go on every 100ms
	// for that long instead.
	Rounds, Down int
	Prompt       bool
	DownFor      time.Duration
	// RecoverWithin bounds how long after Restore the failed messages may keep failing.
	// Default 30s.
	RecoverWithin time.Duration
}

func (o *Outage) defaults() {
	if o.Before == 0 {
		o.Before = 200
	}
	if o.Rounds == 0 {
		o.Rounds = 5
	}
	if o.Down == 0 {
		o.Down = 50
	}
	if o.RecoverWithin == 0 {
		o.RecoverWithin = 30 * time.Second
	}
}

// Reconnect runs an outage under a running sink, as a relay would see it: a batch before it
// is acknowledged; a batch in flight when it begins (see Outage.During) and every batch
// during it fail with sink.Unavailable errors, within the publish timeout, never with
// success; after Restore the sink reconnects by itself, the failed messages go through
// within RecoverWithin (published again ahead of new ones, as the relay does) and a new
// batch is acknowledged whole; and every message ever acknowledged reached the destination,
// first copies in per-key order (see Outage.Receiver and Stored).
func Reconnect(t *testing.T, o Outage) {
	t.Helper()
	o.defaults()
	r := &Retrier{T: t, Sink: o.Sink, Timeout: o.Timeout, Unavailable: true}
	start := time.Now()
	if ok := r.Round(FreshBatch(o.Before, 0)); ok != o.Before {
		t.Fatalf("before the outage: %d of %d acknowledged", ok, o.Before)
	}
	full := time.Since(start)

	if o.During > 0 {
		after := o.CutAfter
		if after == 0 {
			after = full / 2 // some of a batch like the one just timed acknowledged, some not
		}
		cut := make(chan struct{})
		cutter := time.AfterFunc(after, func() {
			o.Cut()
			close(cut)
		})
		defer cutter.Stop()
		inFlight := r.Round(FreshBatch(o.During, 1))
		<-cut
		t.Logf("outage began during a batch of %d: %d acknowledged", o.During, inFlight)
	} else {
		o.Cut()
	}

	round := func(i int) {
		start := time.Now()
		if ok := r.Round(FreshBatch(o.Down, i+2)); ok != 0 {
			t.Fatalf("round %d during the outage: %d messages acknowledged", i, ok)
		}
		if d := time.Since(start); o.Prompt && d > 500*time.Millisecond {
			t.Errorf("Publish during the outage took %s; it should fail at once", d)
		}
	}
	rounds := 0
	if o.DownFor > 0 {
		t.Logf("down for %s", o.DownFor)
		tick := time.NewTicker(100 * time.Millisecond) // like a relay polling every 100ms
		for end := time.Now().Add(o.DownFor); time.Now().Before(end); rounds++ {
			round(rounds)
			<-tick.C
		}
		tick.Stop()
	} else {
		for ; rounds < o.Rounds; rounds++ {
			round(rounds)
		}
	}
	t.Logf("%d publish rounds during the outage, %d messages waiting", rounds, len(r.Pending))

	o.Restore()
	deadline := time.Now().Add(o.RecoverWithin)
	for len(r.Pending) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still failing %s after the outage ended", len(r.Pending), o.RecoverWithin)
		}
		if r.Round(nil) == 0 {
			<-time.After(20 * time.Millisecond) // like the relay's pause after a failed batch
		}
	}
	if ok := r.Round(FreshBatch(200, 999)); ok != 200 {
		t.Fatalf("after the outage: %d of 200 acknowledged", ok)
	}
	if o.Stored != nil {
		if got := o.Stored(); got != len(r.Acked) {
			t.Errorf("the destination holds %d messages, %d were acknowledged", got, len(r.Acked))
		}
	}
	if o.Receiver != nil {
		checkAcked(t, o.Receiver(), r.Acked)
	}
}

// checkAcked reads until every message of acked arrived (duplicates and others allowed) and
// checks that the first copies of each key's messages arrived in acknowledgement order.
func checkAcked(t *testing.T, recv Receiver, acked []*outbox.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := make(map[string]bool, len(acked))
	for _, rec := range acked {
		want[rec.ID.String()] = true
	}
	pos := map[string]int{}
	for i := 0; len(pos) < len(want); i++ {
		m, err := recv.Receive(ctx)
		if err != nil {
			t.Fatalf("received %d of %d acknowledged messages: %v", len(pos), len(want), err)
		}
		if _, dup := pos[m.ID]; !dup && want[m.ID] {
			pos[m.ID] = i
		}
	}
	last := map[string]int{}
	for _, rec := range acked {
		p := pos[rec.ID.String()]
		if prev, seen := last[rec.Key]; seen && prev > p {
			t.Errorf("key %s: message seq %d arrived before an earlier one", rec.Key, rec.Seq)
		}
		last[rec.Key] = p
	}
}

// StartWhileDown checks a sink created while its broker is unreachable (o.Cut already in
// effect, and New succeeded): publishing rec fails with a sink.Unavailable error (with
// o.Prompt, within 500ms); after o.Restore the sink connects by itself and publishes rec
// within o.RecoverWithin (retried every 20ms, as a relay would).
func StartWhileDown(t *testing.T, o Outage, rec *outbox.Record) {
	t.Helper()
	o.defaults()
	publish := func() error {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), o.Timeout+10*time.Second)
		defer cancel()
		res := o.Sink.Publish(ctx, []*outbox.Record{rec})
		if len(res) != 1 {
			t.Fatalf("Publish returned %d results for 1 message", len(res))
		}
		return res[0]
	}
	start := time.Now()
	err := publish()
	if !sink.IsUnavailable(err) {
		t.Fatalf("publish while down: %v, want an Unavailable error", err)
	}
	if d := time.Since(start); o.Prompt && d > 500*time.Millisecond {
		t.Errorf("publish while down took %s; it should fail at once", d)
	}
	t.Logf("while down: %v", err)
	o.Restore()
	deadline := time.Now().Add(o.RecoverWithin)
	for {
		err := publish()
		if err == nil || sink.IsDuplicate(err) {
			return
		}
		if sink.IsPermanent(err) {
			t.Fatalf("permanent error after the broker came back: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing %s after the broker came back: %v", o.RecoverWithin, err)
		}
		<-time.After(20 * time.Millisecond) // like a relay's backoff
	}
}
