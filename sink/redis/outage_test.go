package redis_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/faultproxy"
	"github.com/outboxgo/outbox/sink"
	redissink "github.com/outboxgo/outbox/sink/redis"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// relay is a minimal stand-in for the relay: it keeps failed messages and publishes them
// again, ahead of newer ones, until they are acknowledged.
type relay struct {
	t       *testing.T
	s       sink.Sink
	pending []*outbox.Record // failed, to publish again, in order
	acked   []*outbox.Record // in acknowledgement order
	timeout time.Duration    // the sink's PublishTimeout
}

// round publishes pending messages plus fresh ones, checks that every result is success or
// retryable and that the call returned within the publish timeout, and reports how many
// were acknowledged.
func (r *relay) round(fresh []*outbox.Record) int {
	r.t.Helper()
	batch := append(r.pending, fresh...)
	r.pending = nil
	start := time.Now()
	res := r.s.Publish(context.Background(), batch)
	if d := time.Since(start); d > r.timeout+time.Second {
		r.t.Errorf("Publish took %s, more than the publish timeout %s", d, r.timeout)
	}
	if len(res) != len(batch) {
		r.t.Fatalf("Publish returned %d results for %d messages", len(res), len(batch))
	}
	ok := 0
	for i, err := range res {
		switch {
		case err == nil:
			ok++
			r.acked = append(r.acked, batch[i])
		case sink.IsPermanent(err):
			r.t.Fatalf("message %d: permanent error during an outage: %v", i, err)
		default:
			r.pending = append(r.pending, batch[i])
		}
	}
	return ok
}

func freshBatch(n, round int) []*outbox.Record {
	recs := make([]*outbox.Record, n)
	for i := range recs {
		recs[i] = sinktest.NewRecord("orders", fmt.Sprintf("key-%d", i%5), fmt.Appendf(nil, `{"round":%d,"i":%d}`, round, i))
	}
	return recs
}

// TestConnectionCut cuts the connection to Redis, during a batch and for a while after:
// every Publish meanwhile returns retryable errors within the publish timeout, never
// success; after the restore publishing resumes by itself, and every message ever
// acknowledged is in the stream, in per-key order.
func TestConnectionCut(t *testing.T) {
	t.Parallel()
	c := connect(t)
	prefix := newPrefix(t, c)
	proxy := faultproxy.Start(t, redisAddr())
	const timeout = time.Second
	s := newSink(t, redissink.Config{Addr: proxy.Addr(), StreamPrefix: prefix, PublishTimeout: timeout})
	r := &relay{t: t, s: s, timeout: timeout}

	if ok := r.round(freshBatch(200, 0)); ok != 200 {
		t.Fatalf("before the cut: %d of 200 acknowledged", ok)
	}

	// Cut while a large batch is in flight.
	cut := make(chan struct{})
	cutter := time.AfterFunc(5*time.Millisecond, func() {
		proxy.Cut()
		close(cut)
	})
	defer cutter.Stop()
	inFlight := r.round(freshBatch(5000, 1))
	<-cut
	t.Logf("connection cut during a batch of 5000: %d acknowledged", inFlight)

	for round := 2; round < 7; round++ {
		if ok := r.round(freshBatch(50, round)); ok != 0 {
			t.Fatalf("round %d: %d messages acknowledged through a cut connection", round, ok)
		}
	}
	t.Logf("%d messages waiting", len(r.pending))

	proxy.Restore()
	deadline := time.Now().Add(30 * time.Second)
	for len(r.pending) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still failing 30s after the restore", len(r.pending))
		}
		r.round(nil)
	}
	if ok := r.round(freshBatch(200, 99)); ok != 200 {
		t.Fatalf("after the restore: %d of 200 acknowledged", ok)
	}

	// Everything acknowledged is in the stream; first copies in per-key order.
	recv := newReceiver(c, prefix, "orders")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := make(map[string]bool, len(r.acked))
	for _, rec := range r.acked {
		want[rec.ID.String()] = true
	}
	pos := map[string]int{}
	for i := 0; len(pos) < len(want); i++ {
		m, err := recv.Receive(ctx)
		if err != nil {
			t.Fatalf("read %d of %d acknowledged messages from the stream: %v", len(pos), len(want), err)
		}
		if _, dup := pos[m.ID]; !dup && want[m.ID] {
			pos[m.ID] = i
		}
	}
	last := map[string]int{}
	for _, rec := range r.acked {
		p := pos[rec.ID.String()]
		if prev, seen := last[rec.Key]; seen && prev > p {
			t.Errorf("key %s: message seq %d stored before an earlier one", rec.Key, rec.Seq)
		}
		last[rec.Key] = p
	}
}

// TestStartWhileDown: New succeeds while Redis is unreachable, publishes fail retryably, and
// once it is reachable they succeed.
func TestStartWhileDown(t *testing.T) {
	t.Parallel()
	c := connect(t)
	prefix := newPrefix(t, c)
	proxy := faultproxy.Start(t, redisAddr())
	proxy.Cut()
	s := newSink(t, redissink.Config{Addr: proxy.Addr(), StreamPrefix: prefix, PublishTimeout: time.Second})
	rec := sinktest.NewRecord("orders", "k", []byte("{}"))
	if err := publish(t, s, rec)[0]; err == nil || sink.IsPermanent(err) {
		t.Fatalf("publish while down: %v, want a retryable error", err)
	} else {
		t.Logf("while down: %v", err)
	}
	proxy.Restore()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := publish(t, s, rec)[0]
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 30s after Redis became reachable: %v", err)
		}
		<-time.After(50 * time.Millisecond)
	}
}
