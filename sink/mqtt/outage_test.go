package mqtt_test

import (
	"testing"
	"time"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
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
	sinktest.Reconnect(t, sinktest.Outage{Sink: s, Timeout: timeout, Cut: proxy.Cut, Restore: proxy.Restore,
		Receiver: func() sinktest.Receiver { return sub },
		Before:   2000, During: 2000, Rounds: 10, Down: 20, Prompt: true})
}

// TestStartWhileDown: New succeeds while the broker is unreachable, publishes fail
// retryably and fast, and once it is reachable the sink connects and publishes.
func TestStartWhileDown(t *testing.T) {
	t.Parallel()
	proxy := faultproxy.Start(t, brokerAddr(t))
	proxy.Cut()
	s := newSink(t, mqttsink.Config{Broker: "tcp://" + proxy.Addr(), ReconnectWait: 20 * time.Millisecond, ConnectTimeout: time.Second})
	sinktest.StartWhileDown(t, sinktest.Outage{Sink: s, Timeout: mqttsink.DefaultPublishTimeout, Restore: proxy.Restore, Prompt: true},
		sinktest.NewRecord("outbox-test.down", "k", nil))
}
