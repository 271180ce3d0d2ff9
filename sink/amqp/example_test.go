package amqp_test

import (
	"context"
	"log"
	"time"

	"github.com/outboxgo/outbox"
	amqpsink "github.com/outboxgo/outbox/sink/amqp"
)

// This example needs RabbitMQ on localhost, so it is compiled but not run.
func Example() {
	ctx := context.Background()
	s, err := amqpsink.New(ctx, amqpsink.Config{
		URL:              "amqp://guest:guest@127.0.0.1:5672/",
		Source:           "orders-service",
		Exchange:         "events",
		RoutingKeyPrefix: "orders.",
		// Create the exchange if it does not exist yet (durable topic exchange).
		DeclareExchange: &amqpsink.Exchange{Kind: "topic"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	msgs := []*outbox.Record{{
		Message: outbox.Message{
			ID:      outbox.NewID(),
			Topic:   "created", // routing key orders.created
			Key:     "order-42",
			Payload: []byte(`{"order_id":"order-42","total_cents":1299}`),
			Headers: map[string]string{"content-type": "application/json"},
		},
		Seq:       1,
		CreatedAt: time.Now(),
	}}
	for i, err := range s.Publish(ctx, msgs) {
		if err != nil {
			// Retryable unless sink.IsPermanent(err); amqpsink.ErrUnroutable when no
			// queue is bound for orders.created.
			log.Printf("message %d not published: %v", i, err)
		}
	}
}
