package inbox_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

// Example processes one message twice, as a broker redelivering it would: the handler's
// effect happens once.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.URL())
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	in, err := inbox.New(ctx, inbox.Config{Pool: pool, Consumer: "example", Table: "example_inbox"})
	if err != nil {
		panic(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		panic(err)
	}
	defer func() { _, _ = in.MigrateDown(ctx, 0) }()

	msg := inbox.Message{ID: outbox.NewID().String(), Topic: "orders", Key: "order-1", Position: 1, Payload: []byte(`{}`)}
	handler := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		fmt.Println("handling", m.Topic) // business writes go in tx
		return nil
	}
	for range 2 { // the broker delivers it twice
		if _, err := in.Attempt(ctx, msg); errors.Is(err, inbox.ErrDeadLettered) {
			continue // ack
		} else if err != nil {
			panic(err)
		}
		var res inbox.Result
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) (err error) {
			res, err = in.Process(ctx, tx, msg, handler)
			return err
		})
		if err != nil {
			_ = in.Failed(ctx, msg, err) // nack: the broker redelivers
			continue
		}
		fmt.Println(res) // ack after the commit
	}
	// Output:
	// handling orders
	// applied
	// duplicate
}
