package nats_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/sink"
	natssink "github.com/outboxgo/outbox/sink/nats"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// outageDuration is how long TestOutage keeps the server down: short by default, longer with
// e.g. OUTBOX_TEST_OUTAGE=30s.
func outageDuration(t *testing.T) time.Duration {
	if v := os.Getenv("OUTBOX_TEST_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("OUTBOX_TEST_OUTAGE: %v", err)
		}
		return d
	}
	return 2 * time.Second
}

// TestOutage stops the broker under a running sink: while it is down every Publish returns
// Unavailable errors within the publish timeout, never success; after the restart publishing
// resumes by itself, and every message ever acknowledged is in the stream.
func TestOutage(t *testing.T) {
	t.Parallel()
	srv := natstest.StartServer(t, nil)
	nc := natstest.ConnectURL(t, srv.URL())
	stream, prefix := natstest.Stream(t, nc) // file storage: survives the restart
	nc.Close()

	const timeout = time.Second
	s := newSink(t, natssink.Config{
		URL: srv.URL(), SubjectPrefix: prefix, PublishTimeout: timeout, ReconnectWait: 100 * time.Millisecond,
	})
	r := &sinktest.Retrier{T: t, Sink: s, Timeout: timeout, Unavailable: true}

	if ok := r.Round(sinktest.FreshBatch(200, 0)); ok != 200 {
		t.Fatalf("before the outage: %d of 200 acknowledged", ok)
	}

	// Stop the server while a large batch is in flight: whatever Publish reports acknowledged
	// must survive, the rest must fail retryably, within the timeout (checked by round).
	stopped := make(chan struct{})
	stopper := time.AfterFunc(50*time.Millisecond, func() {
		srv.Shutdown()
		close(stopped)
	})
	defer stopper.Stop()
	inFlight := r.Round(sinktest.FreshBatch(5000, 1000))
	<-stopped
	t.Logf("server stopped during a batch of 5000: %d acknowledged before", inFlight)

	outage := outageDuration(t)
	t.Logf("server down for %s", outage)
	// Publish like a relay polling every 100ms: nothing may succeed while the server is down.
	tick := time.NewTicker(100 * time.Millisecond)
	rounds := 0
	for end := time.Now().Add(outage); time.Now().Before(end); rounds++ {
		if ok := r.Round(sinktest.FreshBatch(50, rounds+1)); ok != 0 {
			t.Fatalf("outage round %d: %d messages acknowledged by a server that is down", rounds, ok)
		}
		<-tick.C
	}
	tick.Stop()
	failed := len(r.Pending)
	t.Logf("%d publish rounds during the outage, %d messages waiting", rounds, failed)

	srv.Restart()
	deadline := time.Now().Add(30 * time.Second)
	for len(r.Pending) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still failing 30s after the restart", len(r.Pending))
		}
		r.Round(nil)
	}
	if ok := r.Round(sinktest.FreshBatch(200, 999)); ok != 200 {
		t.Fatalf("after the restart: %d of 200 acknowledged", ok)
	}

	// Everything acknowledged is in the stream, in per-key order.
	nc2 := natstest.ConnectURL(t, srv.URL())
	js, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := int(info.State.Msgs); got != len(r.Acked) {
		t.Errorf("stream holds %d messages, %d were acknowledged", got, len(r.Acked))
	}
	recv := natstest.Receiver(t, nc2, stream, prefix)
	pos := map[string]int{}
	for i := 0; len(pos) < len(r.Acked); i++ {
		m, err := recv.Receive(ctx)
		if err != nil {
			t.Fatalf("read %d of %d acknowledged messages from the stream: %v", len(pos), len(r.Acked), err)
		}
		if _, dup := pos[m.ID]; !dup {
			pos[m.ID] = i
		}
	}
	last := map[string]int{}
	for _, rec := range r.Acked {
		p, ok := pos[rec.ID.String()]
		if !ok {
			t.Errorf("acknowledged message %s (seq %d) is not in the stream", rec.ID, rec.Seq)
			continue
		}
		if prev, seen := last[rec.Key]; seen && prev > p {
			t.Errorf("key %s: message seq %d stored before an earlier one", rec.Key, rec.Seq)
		}
		last[rec.Key] = p
	}
}

// TestStartWhileDown: New succeeds while NATS is unreachable, publishes fail fast with
// Unavailable errors, and once NATS is up the sink connects, creates its stream and publishes.
func TestStartWhileDown(t *testing.T) {
	t.Parallel()
	srv := natstest.StartServer(t, nil)
	srv.Shutdown()

	prefix := "down."
	s := newSink(t, natssink.Config{
		URL: srv.URL(), SubjectPrefix: prefix, PublishTimeout: time.Second, ReconnectWait: 100 * time.Millisecond,
		Stream: &jetstream.StreamConfig{Name: "DOWN", Subjects: []string{prefix + ">"}},
	})
	rec := sinktest.NewRecord("orders", "k", []byte("{}"))
	start := time.Now()
	res := publish(t, s, rec)
	if !sink.IsUnavailable(res[0]) {
		t.Fatalf("publish while down: %v, want an Unavailable error", res[0])
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("publish while down took %s; it should fail at once", d)
	}
	t.Logf("while down: %v", res[0])

	srv.Restart()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := publish(t, s, rec)[0]
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 30s after NATS came up: %v", err)
		}
		// Back off like the relay would, without a fixed sleep: wait for the next attempt slot.
		<-time.After(50 * time.Millisecond)
	}
}
