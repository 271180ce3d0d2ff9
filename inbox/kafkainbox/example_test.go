package kafkainbox_test

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/kafkainbox"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	kafkasink "github.com/outboxgo/outbox/sink/kafka"
)

// Example consumes what the Kafka sink published, once, into PostgreSQL (an in-process
// fake Kafka cluster stands in for the brokers).
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.AllowAutoTopicCreation())
	if err != nil {
		panic(err)
	}
	defer cluster.Close()
	pool, err := pgxpool.New(ctx, pgtest.URL())
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	in, err := inbox.New(ctx, inbox.Config{Pool: pool, Consumer: "billing", Table: "example_kafka_inbox"})
	if err != nil {
		panic(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		panic(err)
	}
	defer func() { _, _ = in.MigrateDown(context.Background(), 0) }()

	s, err := kafkasink.New(ctx, kafkasink.Config{Brokers: cluster.ListenAddrs(), Source: "orders", AutoCreateTopics: true})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	first := &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: "orders.created", Key: "order-1", Payload: []byte("first")}, Seq: 1}
	second := &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: "orders.created", Key: "order-1", Payload: []byte("second")}, Seq: 2}
	// first is published twice, as a relay retrying after a lost acknowledgement would.
	for _, r := range []*outbox.Record{first, first, second} {
		if err := s.Publish(ctx, []*outbox.Record{r})[0]; err != nil {
			panic(err)
		}
	}

	c, err := kafkainbox.New(kafkainbox.Config{Inbox: in, Brokers: cluster.ListenAddrs(), Group: "billing",
		Topics: []string{"orders.created"}, RetentionInterval: -1})
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
	<-handled // second: the copy of first, before it on the partition, was a duplicate
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// handling order-1 first
	// handling order-1 second
}
