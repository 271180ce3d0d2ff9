package chaos

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/relay"
)

// ---- RabbitMQ: a private exchange and queue on the shared server ----

type amqpBroker struct {
	url      string
	px       *faultproxy.Proxy
	exchange string
	queue    string

	inboxDeclared bool // the consumers' queue exists: close deletes it
}

func startAMQP(rawURL, name string) (*amqpBroker, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parsing the RabbitMQ URL: %w", err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5672")
	}
	b := &amqpBroker{url: rawURL, exchange: name, queue: name}
	conn, err := amqp091.Dial(rawURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to RabbitMQ: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.ExchangeDeclare(b.exchange, "topic", false, false, false, false, nil); err != nil {
		return nil, fmt.Errorf("declaring exchange: %w", err)
	}
	if _, err := ch.QueueDeclare(b.queue, false, false, false, false, nil); err != nil {
		b.close()
		return nil, fmt.Errorf("declaring queue: %w", err)
	}
	if err := ch.QueueBind(b.queue, "#", b.exchange, false, nil); err != nil {
		b.close()
		return nil, fmt.Errorf("binding queue: %w", err)
	}
	if b.px, err = startProxy(host); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *amqpBroker) relayEnv() []string {
	u, _ := url.Parse(b.url)
	u.Host = b.px.Addr()
	return []string{
		"OUTBOX_SINK_TYPE=amqp",
		"OUTBOX_SINK_AMQP_URL=" + u.String(),
		"OUTBOX_SINK_AMQP_EXCHANGE=" + b.exchange,
		"OUTBOX_SINK_AMQP_PUBLISH_TIMEOUT=5s",
		"OUTBOX_SINK_AMQP_RECONNECT_WAIT=100ms",
	}
}

// consume reads the queue (auto-ack) on a connection of its own, reconnecting if it drops.
func (b *amqpBroker) consume(ctx context.Context, deliver func(delivery)) {
	for ctx.Err() == nil {
		b.consumeOnce(ctx, deliver)
		_ = relay.Sleep(ctx, 200*time.Millisecond)
	}
}

func (b *amqpBroker) consumeOnce(ctx context.Context, deliver func(delivery)) {
	conn, err := amqp091.Dial(b.url)
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	ds, err := ch.ConsumeWithContext(ctx, b.queue, "", true, false, false, false, nil)
	if err != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case d, ok := <-ds:
			if !ok {
				return
			}
			id, _ := d.Headers["cloudEvents:id"].(string)
			if id == "" {
				id = d.MessageId
			}
			deliver(delivery{id: id, payload: d.Body, at: time.Now()})
		}
	}
}

func (b *amqpBroker) restart(context.Context, time.Duration) error { return errNoRestart }
func (b *amqpBroker) canRestart() bool                             { return false }
func (b *amqpBroker) cut()                                         { b.px.Cut() }
func (b *amqpBroker) restore()                                     { b.px.Restore() }

func (b *amqpBroker) sweep(context.Context, func(delivery)) error { return errNoSweep }

func (b *amqpBroker) close() {
	if b.px != nil {
		b.px.Close()
	}
	conn, err := amqp091.Dial(b.url)
	if err != nil {
		return
	}
	defer conn.Close()
	if ch, err := conn.Channel(); err == nil {
		_, _ = ch.QueueDelete(b.queue, false, false, false)
		if b.inboxDeclared {
			_, _ = ch.QueueDelete(b.inboxQueue(), false, false, false)
		}
		_ = ch.ExchangeDelete(b.exchange, false, false)
	}
}

func (b *amqpBroker) seesHeaders() bool { return false }

func (b *amqpBroker) notes() []string {
	return []string{"RabbitMQ: the shared server, which other tests use, is never restarted: no broker-restart; broker-cut (every relay connection cut at a fault proxy, new ones refused for the outage) stands in for it. The consumer reads a private queue bound to a private topic exchange."}
}

// inboxQueue is the consumers' queue: a second queue bound to the run's exchange like the raw
// consumer's, with single active consumer.
func (b *amqpBroker) inboxQueue() string { return b.queue + "-inbox" }

// inboxSetup declares the consumers' queue with x-single-active-consumer: every process
// consumes it, and RabbitMQ delivers to one of them at a time, the next one taking over
// (with the unacked messages requeued at their positions) when it goes away.
func (b *amqpBroker) inboxSetup(context.Context, int) (func(int) map[string]string, error) {
	conn, err := amqp091.Dial(b.url)
	if err != nil {
		return nil, fmt.Errorf("connecting to RabbitMQ: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if _, err := ch.QueueDeclare(b.inboxQueue(), false, false, false, false, amqp091.Table{"x-single-active-consumer": true}); err != nil {
		return nil, fmt.Errorf("declaring the consumers' queue: %w", err)
	}
	b.inboxDeclared = true
	if err := ch.QueueBind(b.inboxQueue(), "#", b.exchange, false, nil); err != nil {
		return nil, fmt.Errorf("binding the consumers' queue: %w", err)
	}
	u, _ := url.Parse(b.url)
	u.Host = b.px.Addr()
	return func(int) map[string]string {
		return map[string]string{"url": u.String(), "queue": b.inboxQueue(), "prefetch": "64"}
	}, nil
}

func (b *amqpBroker) inboxProcesses(n int) int { return n }

func (b *amqpBroker) inboxNotes(n int) []string {
	return []string{fmt.Sprintf("consumers (RabbitMQ): %d amqpinbox processes on a second queue %s bound to the run's exchange, declared with x-single-active-consumer (prefetch 64), through the broker's fault proxy: RabbitMQ delivers to one process at a time and hands over to the next, the unacked messages requeued at their positions, when it goes away, so each key's order holds across processes and kills as long as the hand-over requeues before the next consumer gets messages.", n, b.inboxQueue())}
}
