package binlog_test

import (
	"context"
	"testing"
	"time"

	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/sink"
)

// TestNATSEndToEnd: MariaDB binary log → relay → NATS JetStream, in per-key order, with the
// CloudEvents envelope and the message id as Nats-Msg-Id.
func TestNATSEndToEnd(t *testing.T) {
	t.Parallel()
	e := setup(t)
	sourcetest.NATSEndToEnd(t, func(sk sink.Sink) int {
		src := e.source(t, e.config(t))
		if err := src.Setup(context.Background()); err != nil {
			t.Fatal(err)
		}
		n := len(e.produce(t, 20, 0, 25, 10))
		sourcetest.StartRelay(t, src, sk, relay.Config{})
		return n
	})
	sourcetest.WaitFor(t, 10*time.Second, "rows deleted", func() bool { return e.rows(t) == 0 })
}
