package binlog_test

import (
	"context"
	"testing"
	"time"

	"github.com/outboxgo/outbox/internal/natstest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/sink/nats"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// TestNATSEndToEnd: MariaDB binary log → relay → NATS JetStream, in per-key order, with the
// CloudEvents envelope and the message id as Nats-Msg-Id.
func TestNATSEndToEnd(t *testing.T) {
	t.Parallel()
	e := setup(t)
	nc := natstest.Connect(t)
	stream, prefix := natstest.Stream(t, nc)
	sk, err := nats.New(context.Background(), nats.Config{URL: natstest.URL(), SubjectPrefix: prefix, Source: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sk.Close() })
	rcv := natstest.Receiver(t, nc, stream, prefix)
	src := e.source(t, e.config(t))
	if err := src.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := len(e.produce(t, 20, 0, 25, 10))
	startRelay(t, src, sk, relay.Config{})
	got := drainStream(t, rcv, n, 60*time.Second)
	if dups := checkStreamOrder(t, got); dups != 0 {
		t.Fatalf("%d duplicates in the happy path", dups)
	}
	if m := got[0]; m.Source != "shop" || m.SpecVersion != "1.0" || m.Type != "test.orders" || m.Time == "" || m.Headers["Nats-Msg-Id"] != m.ID {
		t.Fatalf("envelope = %+v", m)
	}
	waitFor(t, 10*time.Second, "rows deleted", func() bool { return e.rows(t) == 0 })
}

// drainStream reads want distinct messages from the stream (it fails the test after d) and
// returns them in stream order, duplicates included.
func drainStream(t *testing.T, rcv sinktest.Receiver, want int, d time.Duration) []sinktest.Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		out  []sinktest.Received
		seen = map[string]bool{}
	)
	for len(seen) < want {
		m, err := rcv.Receive(ctx)
		if err != nil {
			t.Fatalf("received %d of %d distinct messages: %v", len(seen), want, err)
		}
		out = append(out, m)
		seen[m.ID] = true
	}
	return out
}

// checkStreamOrder verifies per-key order of first deliveries and returns the duplicates.
func checkStreamOrder(t *testing.T, got []sinktest.Received) (dups int) {
	t.Helper()
	next := map[string]int{}
	seen := map[string]bool{}
	for _, m := range got {
		if seen[m.ID] {
			dups++
			continue
		}
		seen[m.ID] = true
		key, n := parse(string(m.Payload))
		if m.Subject != key {
			t.Fatalf("ce-subject %q, want key %q", m.Subject, key)
		}
		if n != next[key] {
			t.Fatalf("key %s: got seq %d, want %d (order violated)", key, n, next[key])
		}
		next[key] = n + 1
	}
	return dups
}
