package outbox_test

import (
	"context"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

// exampleSchema makes a throwaway schema so the examples run against the real database.
func exampleSchema(ctx context.Context) (*pgxpool.Pool, string, func()) {
	pool, err := pgxpool.New(ctx, pgtest.URL())
	if err != nil {
		log.Fatal(err)
	}
	schema := "example_" + outbox.NewID().String()[24:]
	if _, err := pool.Exec(ctx, `CREATE SCHEMA `+schema); err != nil {
		log.Fatal(err)
	}
	return pool, schema, func() {
		_, _ = pool.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`)
		pool.Close()
	}
}

// Record an order and its event in one transaction: both commit, or neither does.
func ExampleWriter_Enqueue() {
	ctx := context.Background()
	pool, schema, cleanup := exampleSchema(ctx)
	defer cleanup()

	// Create the outbox tables (the outbox command does this with `outbox migrate up`).
	store, err := postgres.New(ctx, postgres.Config{Pool: pool, Table: schema + ".outbox"})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := store.MigrateUp(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE `+schema+`.orders (id text PRIMARY KEY, total_cents int)`); err != nil {
		log.Fatal(err)
	}

	w, err := outbox.NewWriter(outbox.WriterConfig{Table: schema + ".outbox"})
	if err != nil {
		log.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO `+schema+`.orders VALUES ('o-1', 4200)`); err != nil {
			return err
		}
		return w.Enqueue(ctx, tx, outbox.Message{
			Topic:   "orders.created",
			Key:     "o-1", // events of one order are published in commit order
			Type:    "order.created",
			Payload: []byte(`{"id":"o-1","total_cents":4200}`),
			Headers: map[string]string{"content-type": "application/json"},
		})
	})
	if err != nil {
		log.Fatal(err)
	}

	st, err := store.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("waiting for the relay:", st.Pending)
	// Output: waiting for the relay: 1
}

// A message that breaks the rules is refused before anything is written.
func ExampleValidationError() {
	err := outbox.Enqueue(context.Background(), nil, outbox.Message{Topic: ""})
	fmt.Println(err)
	// Output: outbox: invalid message 0: topic must not be empty
}
