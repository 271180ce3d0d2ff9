package mysql_test

import (
	"cmp"
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"os"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/mysql"
)

// A service records an order and its event in one transaction; the relay claims the event
// once that transaction has committed.
func Example() {
	ctx := context.Background()
	dsn := cmp.Or(os.Getenv("OUTBOX_TEST_MYSQL_DSN"), "root@tcp(127.0.0.1:3306)/test")
	// A table name of its own, so that concurrent runs of this example do not collide.
	suffix := rand.Uint32()
	table := fmt.Sprintf("example_outbox_%x", suffix)
	store, err := mysql.New(ctx, mysql.Config{DSN: dsn, Table: table})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if _, err := store.MigrateUp(ctx); err != nil {
		log.Fatal(err)
	}
	db := store.DB()
	defer db.ExecContext(ctx, "DROP TABLE "+table+"_migrations") //nolint:errcheck // cleaning up
	defer store.MigrateDown(ctx, 0)                              //nolint:errcheck // cleaning up
	orders := fmt.Sprintf("example_orders_%x", suffix)
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+orders+" (id VARCHAR(64) PRIMARY KEY, total INT)"); err != nil {
		log.Fatal(err)
	}
	defer db.ExecContext(ctx, "DROP TABLE "+orders) //nolint:errcheck // cleaning up

	// The business transaction: the order row and its event commit together, or neither does.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+orders+" (id, total) VALUES (?, ?)", "order-42", 1999); err != nil {
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
