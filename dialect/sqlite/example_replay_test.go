package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/sqlite"
)

// A relay in retention mode keeps what it published; a replay of the last hour puts those
// messages back at the end of the queue, with their message ids, to be published again.
func Example_replay() {
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
	if err := store.Enqueue(ctx, outbox.Message{Topic: "orders.created", Key: "order-42"},
		outbox.Message{Topic: "orders.paid", Key: "order-42"}); err != nil {
		log.Fatal(err)
	}
	// What a relay with retention does: publish, and mark the rows published.
	c, err := store.Claim(ctx, dialect.ClaimRequest{Limit: 10, Retain: true})
	if err != nil {
		log.Fatal(err)
	}
	var o outbox.Outcome
	for _, r := range c.Records() {
		o.Published = append(o.Published, r.Seq)
	}
	if err := c.Finish(ctx, o); err != nil {
		log.Fatal(err)
	}

	window := dialect.ReplayFilter{From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Minute), Topics: []string{"orders.paid"}}
	n, err := dialect.Replay(ctx, store, window, 0, nil)
	if err != nil {
		log.Fatal(err)
	}
	st, err := store.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("replayed %d, %d waiting to be published again\n", n, st.Pending)
	// Output: replayed 1, 1 waiting to be published again
}
