package nats_test

import (
	"context"
	"log"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	natssink "github.com/outboxgo/outbox/sink/nats"
)

// This example needs a NATS server with JetStream on localhost, so it is compiled but not run.
func Example() {
	ctx := context.Background()
	s, err := natssink.New(ctx, natssink.Config{
		URL:           "nats://127.0.0.1:4222",
		Source:        "orders-service",
		SubjectPrefix: "events.",
		// Create the stream if it does not exist yet.
		Stream: &jetstream.StreamConfig{
			Name:     "EVENTS",
			Subjects: []string{"events.>"},
			Storage:  jetstream.FileStorage,
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	msgs := []*outbox.Record{{
		Message: outbox.Message{
			ID:      outbox.NewID(),
			Topic:   "orders.created", // published to events.orders.created
			Key:     "order-42",
			Payload: []byte(`{"order_id":"order-42","total_cents":1299}`),
			Headers: map[string]string{"content-type": "application/json"},
		},
		Seq:       1,
		CreatedAt: time.Now(),
	}}
	for i, err := range s.Publish(ctx, msgs) {
		if err != nil {
			log.Printf("message %d not published: %v", i, err)
		}
	}
}
