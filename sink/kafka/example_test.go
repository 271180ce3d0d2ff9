package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
	kafkasink "github.com/outboxgo/outbox/sink/kafka"
)

func Example() {
	// An in-process fake Kafka cluster stands in for the brokers here.
	cluster, err := kfake.NewCluster(kfake.AllowAutoTopicCreation())
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()

	ctx := context.Background()
	s, err := kafkasink.New(ctx, kafkasink.Config{
		Brokers:          cluster.ListenAddrs(),
		Source:           "orders-service",
		TopicPrefix:      "events.",
		AutoCreateTopics: true, // usually topics are created by an operator
		Logger:           slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	msgs := []*outbox.Record{
		{
			Message: outbox.Message{
				ID:      outbox.NewID(),
				Topic:   "orders.created", // published to events.orders.created
				Key:     "order-42",       // the record key: one partition per order
				Payload: []byte(`{"order_id":"order-42","total_cents":1299}`),
				Headers: map[string]string{"content-type": "application/json"},
			},
			Seq:       1,
			CreatedAt: time.Now(),
		},
		{
			Message: outbox.Message{
				ID:      outbox.NewID(),
				Topic:   "orders/paid", // not a legal Kafka topic name
				Key:     "order-42",
				Payload: []byte(`{"order_id":"order-42"}`),
			},
			Seq:       2,
			CreatedAt: time.Now(),
		},
	}
	for i, err := range s.Publish(ctx, msgs) {
		fmt.Printf("message %d: delivered %v, permanent failure %v\n", i, err == nil, sink.IsPermanent(err))
	}
	// Output:
	// message 0: delivered true, permanent failure false
	// message 1: delivered false, permanent failure true
}

// A configuration can be checked before anything connects, when a service loads its
// settings: the error names the field, as New's would.
func ExampleConfig_Validate() {
	cfg := kafkasink.Config{
		Brokers:     []string{"kafka-1:9092", "kafka-2:9092"},
		TopicPrefix: "orders/",
	}
	var ce *outbox.ConfigError
	if err := cfg.Validate(); errors.As(err, &ce) {
		fmt.Printf("%s: %s\n", ce.Field, ce.Reason)
	}
	// Output: topic_prefix: character '/' not allowed (only a-z, A-Z, 0-9, '.', '_' and '-')
}
