package redis_test

import (
	"context"
	"testing"
	"time"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/sink"
	redissink "github.com/outboxgo/outbox/sink/redis"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// TestConnectionCut cuts the connection to Redis, during a batch and for a while after:
// every Publish meanwhile returns Unavailable errors within the publish timeout, never
// success; after the restore publishing resumes by itself, and every message ever
// acknowledged is in the stream, in per-key order.
func TestConnectionCut(t *testing.T) {
	t.Parallel()
	c := connect(t)
	prefix := newPrefix(t, c)
	proxy := faultproxy.Start(t, redisAddr())
	const timeout = time.Second
	s := newSink(t, redissink.Config{Addr: proxy.Addr(), StreamPrefix: prefix, PublishTimeout: timeout})
	r := &sinktest.Retrier{T: t, Sink: s, Timeout: timeout, Unavailable: true}

	if ok := r.Round(sinktest.FreshBatch(200, 0)); ok != 200 {
		t.Fatalf("before the cut: %d of 200 acknowledged", ok)
	}

	// Cut while a large batch is in flight.
	cut := make(chan struct{})
	cutter := time.AfterFunc(5*time.Millisecond, func() {
		proxy.Cut()
		close(cut)
	})
	defer cutter.Stop()
	inFlight := r.Round(sinktest.FreshBatch(5000, 1))
	<-cut
	t.Logf("connection cut during a batch of 5000: %d acknowledged", inFlight)

	for round := 2; round < 7; round++ {
		if ok := r.Round(sinktest.FreshBatch(50, round)); ok != 0 {
			t.Fatalf("round %d: %d messages acknowledged through a cut connection", round, ok)
		}
	}
	t.Logf("%d messages waiting", len(r.Pending))

	proxy.Restore()
	deadline := time.Now().Add(30 * time.Second)
	for len(r.Pending) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still failing 30s after the restore", len(r.Pending))
		}
		r.Round(nil)
	}
	if ok := r.Round(sinktest.FreshBatch(200, 99)); ok != 200 {
		t.Fatalf("after the restore: %d of 200 acknowledged", ok)
	}

	// Everything acknowledged is in the stream; first copies in per-key order.
	recv := newReceiver(c, prefix, "orders")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := make(map[string]bool, len(r.Acked))
	for _, rec := range r.Acked {
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
	for _, rec := range r.Acked {
		p := pos[rec.ID.String()]
		if prev, seen := last[rec.Key]; seen && prev > p {
			t.Errorf("key %s: message seq %d stored before an earlier one", rec.Key, rec.Seq)
		}
		last[rec.Key] = p
	}
}

// TestStartWhileDown: New succeeds while Redis is unreachable, publishes fail Unavailable, and
// once it is reachable they succeed.
func TestStartWhileDown(t *testing.T) {
	t.Parallel()
	c := connect(t)
	prefix := newPrefix(t, c)
	proxy := faultproxy.Start(t, redisAddr())
	proxy.Cut()
	s := newSink(t, redissink.Config{Addr: proxy.Addr(), StreamPrefix: prefix, PublishTimeout: time.Second})
	rec := sinktest.NewRecord("orders", "k", []byte("{}"))
	if err := publish(t, s, rec)[0]; !sink.IsUnavailable(err) {
		t.Fatalf("publish while down: %v, want an Unavailable error", err)
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
