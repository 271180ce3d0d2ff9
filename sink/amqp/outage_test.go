package amqp_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
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
	sinktest.Reconnect(t, sinktest.Outage{Sink: s, Timeout: timeout, Cut: proxy.Cut, Restore: proxy.Restore,
		Receiver: func() sinktest.Receiver { return tp.receiver(t) },
		Before:   5000, During: 5000, Rounds: 10, Down: 20, Prompt: true})
}

// TestStartWhileDown: New succeeds while RabbitMQ is unreachable, publishes fail retryably
// and fast, and once it is reachable the sink connects and publishes.
func TestStartWhileDown(t *testing.T) {
	t.Parallel()
	tp := newTopology(t, nil)
	u, proxy := proxied(t)
	proxy.Cut()
	s := newSink(t, amqpsink.Config{URL: u, Exchange: tp.exchange, ReconnectWait: 20 * time.Millisecond, ConnectTimeout: time.Second})
	sinktest.StartWhileDown(t, sinktest.Outage{Sink: s, Timeout: amqpsink.DefaultPublishTimeout, Restore: proxy.Restore, Prompt: true},
		sinktest.NewRecord("orders", "k", nil))
}
