package amqp_test

import (
	"context"
	"net/url"
	"testing"
	"time"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/sink"
	amqpsink "github.com/outboxgo/outbox/sink/amqp"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// proxied returns the broker URL with its host replaced by a fault proxy in front of it.
func proxied(t *testing.T) (string, *faultproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(brokerURL())
	if err != nil {
		t.Fatal(err)
	}
	host := u.Host
	if u.Port() == "" {
		host += ":5672"
	}
	p := faultproxy.Start(t, host)
	u.Host = p.Addr()
	return u.String(), p
}

// TestReconnect cuts the connection between the sink and RabbitMQ during a batch: whatever
// Publish reported acknowledged must be in the queue, the rest fails as Unavailable; while the
// network is cut every Publish fails as Unavailable and promptly, never with success; after the
// network is back the sink reconnects by itself and every acknowledged message is in the
// queue, in per-key order.
func TestReconnect(t *testing.T) {
	t.Parallel()
	tp := newTopology(t, nil)
	u, proxy := proxied(t)
	// Generous: the race detector and a loaded machine slow a batch down a lot.
	const timeout = 15 * time.Second
	s := newSink(t, amqpsink.Config{
		URL: u, Exchange: tp.exchange, RoutingKeyPrefix: tp.prefix,
		PublishTimeout: timeout, ReconnectWait: 20 * time.Millisecond,
	})
	r := &sinktest.Retrier{T: t, Sink: s, Timeout: timeout, Unavailable: true}
	start := time.Now()
	if ok := r.Round(sinktest.FreshBatch(5000, 0)); ok != 5000 {
		t.Fatalf("before the cut: %d of 5000 acknowledged", ok)
	}
	full := time.Since(start)

	// Cut halfway through a batch like the one just timed, so that some of it is
	// acknowledged and some is not.
	cut := make(chan struct{})
	cutter := time.AfterFunc(full/2, func() {
		proxy.Cut()
		close(cut)
	})
	defer cutter.Stop()
	inFlight := r.Round(sinktest.FreshBatch(5000, 1))
	<-cut
	t.Logf("connection cut during a batch of 5000: %d acknowledged", inFlight)

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

	// Everything acknowledged is in the queue (duplicates allowed), in per-key order.
	recv := tp.receiver(t)
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
			t.Fatalf("read %d of %d acknowledged messages from the queue: %v", len(pos), len(want), err)
		}
		if _, dup := pos[m.ID]; !dup && want[m.ID] {
			pos[m.ID] = i
		}
	}
	last := map[string]int{}
	for _, rec := range r.Acked {
		p := pos[rec.ID.String()]
		if prev, seen := last[rec.Key]; seen && prev > p {
			t.Errorf("key %s: message seq %d queued before an earlier one", rec.Key, rec.Seq)
		}
		last[rec.Key] = p
	}
}

// TestStartWhileDown: New succeeds while RabbitMQ is unreachable, publishes fail retryably
// and fast, and once it is reachable the sink connects and publishes.
func TestStartWhileDown(t *testing.T) {
	t.Parallel()
	tp := newTopology(t, nil)
	u, proxy := proxied(t)
	proxy.Cut()
	s := newSink(t, amqpsink.Config{URL: u, Exchange: tp.exchange, ReconnectWait: 20 * time.Millisecond, ConnectTimeout: time.Second})
	start := time.Now()
	err := publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]
	if !sink.IsUnavailable(err) {
		t.Fatalf("publish while down: %v, want an Unavailable error", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("publish while down took %s; it should fail at once", d)
	}
	t.Logf("while down: %v", err)
	proxy.Restore()
	waitPublished(t, s, sinktest.NewRecord("orders", "k", nil))
}
