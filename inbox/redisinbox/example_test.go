package redisinbox_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/redisinbox"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/internal/testutil/service"
	redissink "github.com/outboxgo/outbox/sink/redis"
)

func TestMain(m *testing.M) {
	service.SkipExamples("Example") // it uses PostgreSQL and Redis
	os.Exit(m.Run())
}

// Example consumes what the redis sink appended into an inbox on PostgreSQL.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, pgtest.URL())
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	in, err := inbox.New(ctx, inbox.Config{Pool: pool, Consumer: "example", Table: "redisinbox_example"})
	if err != nil {
		panic(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		panic(err)
	}
	defer func() { _, _ = in.MigrateDown(ctx, 0) }()

	// The producer's side: the sink (the relay publishes through it).
	prefix := "redisinbox-example:" + strings.ReplaceAll(outbox.NewID().String(), "-", "") + ":"
	s, err := redissink.New(ctx, redissink.Config{Addr: redisAddr(), StreamPrefix: prefix})
	if err != nil {
		panic(err)
	}
	defer func() { _ = s.Close() }()
	defer func() {
		rdb := goredis.NewClient(&goredis.Options{Addr: redisAddr()})
		defer func() { _ = rdb.Close() }()
		_ = rdb.Del(context.Background(), prefix+"orders").Err()
	}()
	rec := &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: "orders", Key: "order-1", Payload: []byte(`{}`)}, Seq: 1}
	if err := s.Publish(ctx, []*outbox.Record{rec})[0]; err != nil {
		panic(err)
	}

	a, err := redisinbox.New(redisinbox.Config{Inbox: in, Addr: redisAddr(), StreamPrefix: prefix, Topics: []string{"orders"}, Consumer: "example-1"})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- a.Run(runCtx, func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
			fmt.Println("handling", m.Topic, m.Key) // business writes go in tx
			return nil
		})
	}()
	// Wait for the commit (the message's id in the inbox), then stop the adapter.
	for n := 0; n == 0; time.Sleep(20 * time.Millisecond) {
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM redisinbox_example WHERE message_id = $1`, rec.ID.String()).Scan(&n); err != nil {
			panic(err)
		}
	}
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	// Output:
	// handling orders order-1
}
