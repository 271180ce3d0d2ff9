package mqttinbox_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/mqttinbox"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	mqttsink "github.com/outboxgo/outbox/sink/mqtt"
)

// Example consumes a message the MQTT sink published twice: the handler's effect happens
// once.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.URL())
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	in, err := inbox.New(ctx, inbox.Config{Pool: pool, Consumer: "example", Table: "mqttinbox_example"})
	if err != nil {
		panic(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		panic(err)
	}
	defer func() { _, _ = in.MigrateDown(ctx, 0) }()

	prefix := "outbox-example/" + outbox.NewID().String() + "/"
	done := make(chan struct{})
	c, err := mqttinbox.New(mqttinbox.Config{
		Inbox:         in,
		Broker:        "tcp://127.0.0.1:1883",
		ClientID:      "example-" + outbox.NewID().String(),
		TopicPrefix:   prefix,
		SessionExpiry: time.Minute,
	})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var handled atomic.Int32
	go func() {
		_ = c.Run(runCtx, func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
			handled.Add(1)
			fmt.Println("handling", m.Topic, string(m.Payload)) // business writes go in tx
			if m.Key == "last" {
				close(done)
			}
			return nil
		})
	}()

	s, err := mqttsink.New(ctx, mqttsink.Config{TopicPrefix: prefix})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	rec := &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: "orders.created", Payload: []byte(`{"id":1}`)}, Seq: 1}
	last := &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: "orders.created", Key: "last", Payload: []byte(`{}`)}, Seq: 2}
	// Until the consumer has subscribed, MQTT drops what is published: retry the first.
	for deadline := time.Now().Add(10 * time.Second); handled.Load() == 0 && time.Now().Before(deadline); {
		s.Publish(ctx, []*outbox.Record{rec})
		time.Sleep(50 * time.Millisecond)
	}
	s.Publish(ctx, []*outbox.Record{rec, last}) // again: a duplicate
	<-done
	// Output:
	// handling orders.created {"id":1}
	// handling orders.created {}
}
