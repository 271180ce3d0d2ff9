package webhookinbox_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/webhookinbox"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/sink/webhook"
)

// Example serves the handler and posts one message to it twice through the webhook sink:
// the handler's effect happens once.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.URL())
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	in, err := inbox.New(ctx, inbox.Config{Pool: pool, Consumer: "example", Table: "webhookinbox_example"})
	if err != nil {
		panic(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		panic(err)
	}
	defer func() { _, _ = in.MigrateDown(ctx, 0) }()

	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	h, err := webhookinbox.New(webhookinbox.Config{
		Inbox:   in,
		Secrets: []string{secret},
		Handler: func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
			fmt.Println("handling", m.Topic, string(m.Payload)) // business writes go in tx
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(h) // topic = path: /orders.created
	defer srv.Close()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = h.Run(runCtx) }() // redrive and retention

	s, err := webhook.New(ctx, webhook.Config{URL: srv.URL + "/orders.created", Secrets: []string{secret}})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	rec := &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: "orders.created", Payload: []byte(`{"id":1}`)},
		Seq: 1, CreatedAt: time.Now()}
	for range 2 { // the relay sends it twice (its acknowledgement was lost)
		fmt.Println(s.Publish(ctx, []*outbox.Record{rec})[0])
	}
	// Output:
	// handling orders.created {"id":1}
	// <nil>
	// <nil>
}
