package amqp_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	goamqp "github.com/Azure/go-amqp"
	ceamqp "github.com/cloudevents/sdk-go/protocol/amqp/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/service"
	"github.com/outboxgo/outbox/sink"
	amqpsink "github.com/outboxgo/outbox/sink/amqp"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// defaultURL is the shared test broker used when RABBITMQ_URL is not set.
const defaultURL = "amqp://guest:guest@127.0.0.1:5672/"

func brokerURL() string {
	if u := os.Getenv("RABBITMQ_URL"); u != "" {
		return u
	}
	return defaultURL
}

// dial connects to the shared broker and closes the connection when the test ends. It fails
// the test, never skips it, when RabbitMQ is unreachable (with -short it skips it).
func dial(t testing.TB) *amqp091.Connection {
	t.Helper()
	service.Require(t, "RabbitMQ")
	conn, err := amqp091.Dial(brokerURL())
	if err != nil {
		t.Fatalf("connecting to RabbitMQ at %s (start it with `rabbitmq-server -detached`, or set RABBITMQ_URL): %v", brokerURL(), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func channel(t testing.TB, conn *amqp091.Connection) *amqp091.Channel {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatalf("opening channel: %v", err)
	}
	return ch
}

// uniqueName returns a name no other test uses.
func uniqueName(what string) string {
	return "outbox-test-" + what + "-" + strings.ReplaceAll(outbox.NewID().String(), "-", "")[20:]
}

// topology is a private exchange with a queue bound to all of it, read by a consumer.
type topology struct {
	conn     *amqp091.Connection
	exchange string
	queue    string
	prefix   string
}

// newTopology declares a topic exchange and an exclusive queue bound with "#" on a
// connection of its own, and deletes both when the test ends. queueArgs are the queue's
// x-arguments.
func newTopology(t testing.TB, queueArgs amqp091.Table) *topology {
	t.Helper()
	conn := dial(t)
	ch := channel(t, conn)
	tp := &topology{conn: conn, exchange: uniqueName("ex"), queue: uniqueName("q"), prefix: "app."}
	if err := ch.ExchangeDeclare(tp.exchange, "topic", false, false, false, false, nil); err != nil {
		t.Fatalf("declaring exchange: %v", err)
	}
	t.Cleanup(func() {
		c, err := amqp091.Dial(brokerURL())
		if err != nil {
			return
		}
		defer c.Close()
		if cch, err := c.Channel(); err == nil {
			_ = cch.ExchangeDelete(tp.exchange, false, false)
			_, _ = cch.QueueDelete(tp.queue, false, false, false)
		}
	})
	if _, err := ch.QueueDeclare(tp.queue, false, false, true, false, queueArgs); err != nil {
		t.Fatalf("declaring queue: %v", err)
	}
	if err := ch.QueueBind(tp.queue, "#", tp.exchange, false, nil); err != nil {
		t.Fatalf("binding queue: %v", err)
	}
	return tp
}

// receiver consumes the topology's queue.
func (tp *topology) receiver(t testing.TB) *receiver {
	t.Helper()
	ch := channel(t, tp.conn)
	deliveries, err := ch.Consume(tp.queue, "", true, true, false, false, nil)
	if err != nil {
		t.Fatalf("consuming %s: %v", tp.queue, err)
	}
	return &receiver{deliveries: deliveries, prefix: tp.prefix}
}

type receiver struct {
	deliveries <-chan amqp091.Delivery
	prefix     string
}

func (r *receiver) Receive(ctx context.Context) (sinktest.Received, error) {
	select {
	case d, ok := <-r.deliveries:
		if !ok {
			return sinktest.Received{}, fmt.Errorf("consumer closed")
		}
		return decode(d, r.prefix)
	case <-ctx.Done():
		return sinktest.Received{}, ctx.Err()
	}
}

// decode reads a delivery with the CloudEvents Go SDK's AMQP binding (protocol/amqp), not
// with the sink's code: the AMQP 0-9-1 delivery becomes the AMQP message the binding reads,
// its headers table the application properties and its content-type property the
// message's. Headers other than the cloudEvents: ones are the user's.
func decode(d amqp091.Delivery, prefix string) (sinktest.Received, error) {
	am := &goamqp.Message{
		Properties:            &goamqp.MessageProperties{},
		ApplicationProperties: map[string]any{},
		Data:                  [][]byte{d.Body},
	}
	if d.ContentType != "" {
		ct := goamqp.AMQPSymbol(d.ContentType)
		am.Properties.ContentType = &ct
	}
	user := map[string]string{}
	for name, v := range d.Headers {
		am.ApplicationProperties[name] = v
		if !strings.HasPrefix(name, "cloudEvents:") {
			user[name] = fmt.Sprint(v)
		}
	}
	msg := ceamqp.NewMessage(am, nil)
	if msg.ReadEncoding() != binding.EncodingBinary {
		return sinktest.Received{}, fmt.Errorf("delivery on %s is not a binary-mode CloudEvent: headers %v", d.RoutingKey, d.Headers)
	}
	ev, err := binding.ToEvent(context.Background(), msg)
	if err != nil {
		return sinktest.Received{}, fmt.Errorf("CloudEvents AMQP binding cannot read the delivery on %s: %w", d.RoutingKey, err)
	}
	for name := range ev.Extensions() {
		if name != sink.SeqAttribute {
			return sinktest.Received{}, fmt.Errorf("delivery on %s: unexpected CloudEvents extensions %v", d.RoutingKey, ev.Extensions())
		}
	}
	m, err := sinktest.FromEvent(strings.TrimPrefix(d.RoutingKey, prefix), ev)
	m.Headers = user
	return m, err
}

func newSink(t testing.TB, cfg amqpsink.Config) *amqpsink.Sink {
	t.Helper()
	if cfg.URL == "" {
		service.Require(t, "RabbitMQ")
		cfg.URL = brokerURL()
	}
	if cfg.Logger == nil {
		cfg.Logger = logtest.New(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := amqpsink.New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func publish(t testing.TB, s *amqpsink.Sink, recs ...*outbox.Record) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := s.Publish(ctx, recs)
	if len(res) != len(recs) {
		t.Fatalf("Publish returned %d results for %d messages", len(res), len(recs))
	}
	return res
}

// get reads one message from queue with basic.get, polling until timeout.
func get(t testing.TB, ch *amqp091.Channel, queue string) amqp091.Delivery {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("basic.get from %s: %v", queue, err)
		}
		if ok {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message in %s within 10s", queue)
		}
		<-time.After(20 * time.Millisecond)
	}
}
