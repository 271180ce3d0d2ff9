package nats_test

import (
	"context"
	"os"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox/internal/testutil/natstest"
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
	// A fresh connection after the restart: the stream's messages, and a receiver of them.
	var nc2 *natsgo.Conn
	after := func() *natsgo.Conn {
		if nc2 == nil {
			nc2 = natstest.ConnectURL(t, srv.URL())
		}
		return nc2
	}
	sinktest.Reconnect(t, sinktest.Outage{Sink: s, Timeout: timeout, Cut: srv.Shutdown, Restore: srv.Restart,
		// Stop the server while a large batch is in flight: whatever Publish reports
		// acknowledged must survive, the rest must fail retryably, within the timeout.
		Before: 200, During: 5000, CutAfter: 50 * time.Millisecond,
		// Publish like a relay polling every 100ms: nothing may succeed while the server is down.
		DownFor: outageDuration(t), Down: 50,
		Stored: func() int {
			js, err := jetstream.New(after())
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
			return int(info.State.Msgs)
		},
		Receiver: func() sinktest.Receiver { return natstest.Receiver(t, after(), stream, prefix) },
	})
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
	sinktest.StartWhileDown(t, sinktest.Outage{Sink: s, Timeout: time.Second, Restore: srv.Restart, Prompt: true},
		sinktest.NewRecord("orders", "k", []byte("{}")))
}
