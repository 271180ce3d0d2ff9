package redis_test

import (
	"testing"
	"time"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
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
	sinktest.Reconnect(t, sinktest.Outage{Sink: s, Timeout: timeout, Cut: proxy.Cut, Restore: proxy.Restore,
		Receiver: func() sinktest.Receiver { return newReceiver(c, prefix, "orders") },
		Before:   200, During: 5000, CutAfter: 5 * time.Millisecond, Rounds: 5, Down: 50})
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
	sinktest.StartWhileDown(t, sinktest.Outage{Sink: s, Timeout: time.Second, Restore: proxy.Restore},
		sinktest.NewRecord("orders", "k", []byte("{}")))
}
