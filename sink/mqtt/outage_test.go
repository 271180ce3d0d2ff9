package mqtt_test

import (
	"context"
	"testing"
	"time"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/sink"
	mqttsink "github.com/outboxgo/outbox/sink/mqtt"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// TestReconnect cuts the connection between the sink and the broker during a batch: what
// Publish reported acknowledged reaches the subscriber, the rest fails as Unavailable; while
// the network is cut every Publish fails as Unavailable and promptly, never with success; after the
// network is back the sink reconnects by itself, and every acknowledged message reaches the
// subscriber, in per-key order.
func TestReconnect(t *testing.T) {
	t.Parallel()
	prefix := uniquePrefix()
	sub := subscribe(t, prefix, "/") // directly, not through the proxy
	proxy := faultproxy.Start(t, brokerAddr(t))
	// Generous: the race detector and a loaded machine slow a batch down a lot.
	const timeout = 15 * time.Second
	s := newSink(t, mqttsink.Config{
		Broker: "tcp://" + proxy.Addr(), TopicPrefix: prefix,
		PublishTimeout: timeout, ReconnectWait: 20 * time.Millisecond,
	})
	r := &sinktest.Retrier{T: t, Sink: s, Timeout: timeout, Unavailable: true}
	start := time.Now()
	if ok := r.Round(sinktest.FreshBatch(2000, 0)); ok != 2000 {
		t.Fatalf("before the cut: %d of 2000 acknowledged", ok)
	}
	full := time.Since(start)

	// Cut halfway through a batch like the one just timed.
	cut := make(chan struct{})
	cutter := time.AfterFunc(full/2, func() {
		proxy.Cut()
		close(cut)
	})
	defer cutter.Stop()
	inFlight := r.Round(sinktest.FreshBatch(2000, 1))
	<-cut
	t.Logf("connection cut during a batch of 2000: %d acknowledged", inFlight)

	for i := 0; i < 10; i++ {
		start := time.Now()
		if ok := r.Round(sinktest.FreshBatch(20, i+2)); ok != 0 {
			t.Fatalf("round %d while cut: %d messages acknowledged", i, ok)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("Publish while disconnected took %s; it should fail at once", d)
		}
	}
	t.Logf("%d messages waiting", len(r.Pending))

	proxy.Restore()
	deadline := time.Now().Add(30 * time.Second)
	for len(r.Pending) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still failing 30s after the network came back", len(r.Pending))
		}
		if r.Round(nil) == 0 {
			<-time.After(20 * time.Millisecond) // like the relay's pause after a failed batch
		}
	}
	if ok := r.Round(sinktest.FreshBatch(200, 999)); ok != 200 {
		t.Fatalf("after the restore: %d of 200 acknowledged", ok)
	}

	// Every acknowledged message reached the subscriber (duplicates allowed), in per-key order.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := make(map[string]bool, len(r.Acked))
	for _, rec := range r.Acked {
		want[rec.ID.String()] = true
	}
	pos := map[string]int{}
	for i := 0; len(pos) < len(want); i++ {
		m, err := sub.Receive(ctx)
		if err != nil {
			t.Fatalf("received %d of %d acknowledged messages: %v", len(pos), len(want), err)
		}
		if _, dup := pos[m.ID]; !dup && want[m.ID] {
			pos[m.ID] = i
		}
	}
	last := map[string]int{}
	for _, rec := range r.Acked {
		p := pos[rec.ID.String()]
		if prev, seen := last[rec.Key]; seen && prev > p {
			t.Errorf("key %s: message seq %d delivered before an earlier one", rec.Key, rec.Seq)
		}
		last[rec.Key] = p
	}
}

// TestStartWhileDown: New succeeds while the broker is unreachable, publishes fail
// retryably and fast, and once it is reachable the sink connects and publishes.
func TestStartWhileDown(t *testing.T) {
	t.Parallel()
	proxy := faultproxy.Start(t, brokerAddr(t))
	proxy.Cut()
	s := newSink(t, mqttsink.Config{Broker: "tcp://" + proxy.Addr(), ReconnectWait: 20 * time.Millisecond, ConnectTimeout: time.Second})
	start := time.Now()
	err := publish(t, s, sinktest.NewRecord("outbox-test.down", "k", nil))[0]
	if !sink.IsUnavailable(err) {
		t.Fatalf("publish while down: %v, want an Unavailable error", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("publish while down took %s; it should fail at once", d)
	}
	t.Logf("while down: %v", err)
	proxy.Restore()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := publish(t, s, sinktest.NewRecord("outbox-test.down", "k", nil))[0]
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 30s after the broker came back: %v", err)
		}
		<-time.After(20 * time.Millisecond)
	}
}
