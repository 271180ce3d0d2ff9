package amqp_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/faultproxy"
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

// relay is a minimal stand-in for the relay: it keeps failed messages and publishes them
// again, ahead of newer ones, until they are acknowledged.
type relay struct {
	t       *testing.T
	s       sink.Sink
	pending []*outbox.Record
	acked   []*outbox.Record
	timeout time.Duration
}

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

// TestReconnect cuts the connection between the sink and RabbitMQ during a batch: whatever
// Publish reported acknowledged must be in the queue, the rest fails retryably; while the
// network is cut every Publish fails retryably and promptly, never with success; after the
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
	r := &relay{t: t, s: s, timeout: timeout}
	start := time.Now()
	if ok := r.round(freshBatch(5000, 0)); ok != 5000 {
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
	inFlight := r.round(freshBatch(5000, 1))
	<-cut
	t.Logf("connection cut during a batch of 5000: %d acknowledged", inFlight)

	for i := 0; i < 10; i++ {
		start := time.Now()
		if ok := r.round(freshBatch(20, i+2)); ok != 0 {
			t.Fatalf("round %d while cut: %d messages acknowledged", i, ok)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("Publish while disconnected took %s; it should fail at once", d)
		}
	}
	t.Logf("%d messages waiting", len(r.pending))

	proxy.Restore()
	deadline := time.Now().Add(30 * time.Second)
	for len(r.pending) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still failing 30s after the network came back", len(r.pending))
		}
		if r.round(nil) == 0 {
			<-time.After(20 * time.Millisecond) // like the relay's pause after a failed batch
		}
	}
	if ok := r.round(freshBatch(200, 999)); ok != 200 {
		t.Fatalf("after the restore: %d of 200 acknowledged", ok)
	}

	// Everything acknowledged is in the queue (duplicates allowed), in per-key order.
	recv := tp.receiver(t)
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
			t.Fatalf("read %d of %d acknowledged messages from the queue: %v", len(pos), len(want), err)
		}
		if _, dup := pos[m.ID]; !dup && want[m.ID] {
			pos[m.ID] = i
		}
	}
	last := map[string]int{}
	for _, rec := range r.acked {
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
	if err == nil || sink.IsPermanent(err) {
		t.Fatalf("publish while down: %v, want a retryable error", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("publish while down took %s; it should fail at once", d)
	}
	t.Logf("while down: %v", err)
	proxy.Restore()
	waitPublished(t, s, sinktest.NewRecord("orders", "k", nil))
}
