package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/sqlite"
)

// A service records an order and its event in one transaction; the relay claims the event
// once that transaction has committed.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "outbox-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	store, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(dir, "shop.db")})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if _, err := store.MigrateUp(ctx); err != nil {
		log.Fatal(err)
	}
	db := store.DB()
	if _, err := db.ExecContext(ctx, `CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER)`); err != nil {
		log.Fatal(err)
	}

	// The business transaction: the order row and its event commit together, or neither does.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id, total) VALUES (?, ?)`, "order-42", 1999); err != nil {
		log.Fatal(err)
	}
	err = store.Writer().Enqueue(ctx, tx, outbox.Message{
		Topic:   "orders.created",
		Key:     "order-42",
		Payload: []byte(`{"id":"order-42","total":1999}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}

	// The relay's side: claim, publish, then finish.
	claim, err := store.Claim(ctx, dialect.ClaimRequest{Limit: 10})
	if err != nil {
		log.Fatal(err)
	}
	var done []int64
	for _, r := range claim.Records() {
		fmt.Printf("%s key=%s %s\n", r.Topic, r.Key, r.Payload)
		done = append(done, r.Seq)
	}
	if err := claim.Finish(ctx, outbox.Outcome{Published: done}); err != nil {
		log.Fatal(err)
	}
	st, err := store.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pending:", st.Pending)
	// Output:
	// orders.created key=order-42 {"id":"order-42","total":1999}
	// pending: 0
}
