package redis_test

import (
	"context"
	"log"
	"time"

	"github.com/outboxgo/outbox"
	redissink "github.com/outboxgo/outbox/sink/redis"
)

// This example needs a Redis server on localhost, so it is compiled but not run.
func Example() {
	ctx := context.Background()
	s, err := redissink.New(ctx, redissink.Config{
		Addr:         "127.0.0.1:6379",
		Source:       "orders-service",
		StreamPrefix: "events:",
		// Keep about the newest million entries per stream.
		MaxLen:      1_000_000,
		Approximate: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	msgs := []*outbox.Record{{
		Message: outbox.Message{
			ID:      outbox.NewID(),
			Topic:   "orders.created", // appended to the stream events:orders.created
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
