package mqtt_test

import (
	"context"
	"log"
	"time"

	"github.com/outboxgo/outbox"
	mqttsink "github.com/outboxgo/outbox/sink/mqtt"
)

// This example needs an MQTT 5 broker on localhost, so it is compiled but not run.
func Example() {
	ctx := context.Background()
	s, err := mqttsink.New(ctx, mqttsink.Config{
		Broker:      "tcp://127.0.0.1:1883",
		Source:      "orders-service",
		TopicPrefix: "events/",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	msgs := []*outbox.Record{{
		Message: outbox.Message{
			ID:      outbox.NewID(),
			Topic:   "orders.created", // published to events/orders/created
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
