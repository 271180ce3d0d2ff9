package amqpinbox_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/amqpinbox"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	amqpsink "github.com/outboxgo/outbox/sink/amqp"
)

// Example consumes what the AMQP sink published to a queue, once, into PostgreSQL.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, pgtest.URL())
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	in, err := inbox.New(ctx, inbox.Config{Pool: pool, Consumer: "billing", Table: "example_amqp_inbox"})
	if err != nil {
		panic(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		panic(err)
	}
	defer func() { _, _ = in.MigrateDown(context.Background(), 0) }()

	// The operator's queue; the sink publishes to the default exchange, routing key = topic.
	conn, err := amqp091.Dial(brokerURL())
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		panic(err)
	}
	queue := uniqueName("example")
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		panic(err)
	}
	defer func() { _, _ = ch.QueueDelete(queue, false, false, false) }()

	s, err := amqpsink.New(ctx, amqpsink.Config{URL: brokerURL(), Source: "orders"})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	first := &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: queue, Key: "order-1", Payload: []byte("first")}, Seq: 1}
	second := &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: queue, Key: "order-1", Payload: []byte("second")}, Seq: 2}
	// first is published twice, as a relay retrying after a lost confirmation would.
	for _, r := range []*outbox.Record{first, first, second} {
		if err := s.Publish(ctx, []*outbox.Record{r})[0]; err != nil {
			panic(err)
		}
	}

	c, err := amqpinbox.New(amqpinbox.Config{Inbox: in, URL: brokerURL(), Queue: queue, RetentionInterval: -1})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	handled := make(chan struct{}, 2)
	go func() {
		done <- c.Run(runCtx, func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
			fmt.Println("handling", m.Key, string(m.Payload)) // business writes go in tx
			handled <- struct{}{}
			return nil
		})
	}()
	<-handled
	<-handled // second: the copy of first, before it in the queue, was a duplicate
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// handling order-1 first
	// handling order-1 second
}
