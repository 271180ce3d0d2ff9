package mqtt_test

import (
	"context"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/service"
	mqttsink "github.com/outboxgo/outbox/sink/mqtt"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// defaultBroker is the shared test broker used when MQTT_URL is not set.
const defaultBroker = "tcp://127.0.0.1:1883"

func brokerURL() string {
	if u := os.Getenv("MQTT_URL"); u != "" {
		return u
	}
	return defaultBroker
}

// brokerAddr is the shared broker's host:port; with -short it skips the test.
func brokerAddr(t testing.TB) string {
	t.Helper()
	service.Require(t, "Mosquitto (MQTT)")
	u, err := url.Parse(brokerURL())
	if err != nil {
		t.Fatalf("MQTT_URL: %v", err)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "1883")
	}
	return u.Host
}

// uniquePrefix returns a topic prefix no other test uses.
func uniquePrefix() string {
	return "outbox-test/" + strings.ReplaceAll(outbox.NewID().String(), "-", "")[16:] + "/"
}

// subscriber is a paho MQTT 5 client subscribed to prefix+"#" at QoS 1 that queues what it
// receives. It is set up (SUBACK received) before it returns, so it sees everything
// published after.
type subscriber struct {
	prefix string
	sep    string // the sink's topic separator, mapped back to "."
	client *paho.Client

	mu     sync.Mutex
	queue  []*paho.Publish
	notify chan struct{}
}

func subscribe(t testing.TB, prefix, sep string) *subscriber {
	t.Helper()
	sub := &subscriber{prefix: prefix, sep: sep, notify: make(chan struct{}, 1)}
	nc, err := net.DialTimeout("tcp", brokerAddr(t), 5*time.Second)
	if err != nil {
		t.Fatalf("connecting to the MQTT broker at %s (start it with `mosquitto -d -c /etc/mosquitto/mosquitto.conf`, or set MQTT_URL): %v", brokerURL(), err)
	}
	sub.client = paho.NewClient(paho.ClientConfig{
		Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			sub.mu.Lock()
			sub.queue = append(sub.queue, pr.Packet)
			sub.mu.Unlock()
			select {
			case sub.notify <- struct{}{}:
			default:
			}
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Receive Maximum 65535: the broker then keeps up to that many QoS 1 messages in flight
	// to us instead of queueing them (Mosquitto drops what exceeds max_queued_messages).
	recvMax := uint16(65535)
	ca, err := sub.client.Connect(ctx, &paho.Connect{
		ClientID:   "outbox-test-sub-" + strings.ReplaceAll(outbox.NewID().String(), "-", "")[16:],
		KeepAlive:  30,
		CleanStart: true,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &recvMax},
	})
	if err != nil {
		t.Fatalf("subscriber CONNECT: %v", err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("subscriber CONNACK: reason code %d", ca.ReasonCode)
	}
	t.Cleanup(func() { _ = sub.client.Disconnect(&paho.Disconnect{}) })
	sa, err := sub.client.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: prefix + "#", QoS: 1}}})
	if err != nil {
		t.Fatalf("SUBSCRIBE %s#: %v", prefix, err)
	}
	if len(sa.Reasons) != 1 || sa.Reasons[0] != 1 {
		t.Fatalf("SUBACK for %s#: %v, want granted QoS 1", prefix, sa.Reasons)
	}
	return sub
}

// next returns the next message received, waiting until ctx ends.
func (s *subscriber) next(ctx context.Context) (*paho.Publish, error) {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			p := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			return p, nil
		}
		s.mu.Unlock()
		select {
		case <-s.notify:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Receive implements sinktest.Receiver: it decodes the CloudEvents MQTT binding (binary
// mode) with the SDK (see decode).
func (s *subscriber) Receive(ctx context.Context) (sinktest.Received, error) {
	p, err := s.next(ctx)
	if err != nil {
		return sinktest.Received{}, err
	}
	return decode(p, s.prefix, s.sep)
}

func newSink(t testing.TB, cfg mqttsink.Config) *mqttsink.Sink {
	t.Helper()
	if cfg.Broker == "" {
		service.Require(t, "Mosquitto (MQTT)")
		cfg.Broker = brokerURL()
	}
	if cfg.Logger == nil {
		cfg.Logger = logtest.New(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := mqttsink.New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func publish(t testing.TB, s *mqttsink.Sink, recs ...*outbox.Record) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := s.Publish(ctx, recs)
	if len(res) != len(recs) {
		t.Fatalf("Publish returned %d results for %d messages", len(res), len(recs))
	}
	return res
}
