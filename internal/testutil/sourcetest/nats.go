package sourcetest

import (
	"context"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/relay/relaytest"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/nats"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// NATSSink returns a sink into a private JetStream stream of the shared test server, closed
// when the test ends.
func NATSSink(tb testing.TB) sink.Sink {
	tb.Helper()
	sk, _, _, _ := natsSink(tb, "")
	return sk
}

func natsSink(tb testing.TB, source string) (sk sink.Sink, nc *natsgo.Conn, stream, prefix string) {
	tb.Helper()
	nc = natstest.Connect(tb)
	stream, prefix = natstest.Stream(tb, nc)
	ns, err := nats.New(context.Background(), nats.Config{URL: natstest.URL(), SubjectPrefix: prefix, Source: source})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ns.Close() })
	return ns, nc, stream, prefix
}

// NATSEndToEnd checks a source end to end into NATS JetStream: run starts a relay publishing
// into the sink it is given (CloudEvents source "shop") and returns how many messages it
// produced; they must arrive once each (within 60s), in per-key order, with the CloudEvents
// envelope and the message id as Nats-Msg-Id.
func NATSEndToEnd(t *testing.T, run func(sk sink.Sink) (produced int)) {
	t.Helper()
	sk, nc, stream, prefix := natsSink(t, "shop")
	rcv := natstest.Receiver(t, nc, stream, prefix)
	n := run(sk)
	got := DrainStream(t, rcv, n, 60*time.Second)
	if dups := CheckStreamOrder(t, got); dups != 0 {
		t.Fatalf("%d duplicates in the happy path", dups)
	}
	if m := got[0]; m.Source != "shop" || m.SpecVersion != "1.0" || m.Type != "test.orders" || m.Time == "" || m.Headers["Nats-Msg-Id"] != m.ID {
		t.Fatalf("envelope = %+v", m)
	}
}

// DrainStream reads want distinct messages from the stream (it fails the test after d) and
// returns them in stream order, duplicates included.
func DrainStream(t *testing.T, rcv sinktest.Receiver, want int, d time.Duration) []sinktest.Received {
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

// CheckStreamOrder verifies per-key order of first deliveries (the key is the CloudEvents
// subject) and returns the duplicates.
func CheckStreamOrder(t *testing.T, got []sinktest.Received) (dups int) {
	t.Helper()
	var o relaytest.Order
	for _, m := range got {
		if err := o.Add(m.ID, m.Subject, m.Payload); err != nil {
			t.Fatalf("ce-subject %q: %v", m.Subject, err)
		}
	}
	return o.Duplicates()
}
