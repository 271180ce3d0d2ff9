package natsinbox_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/natsinbox"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/internal/testutil/service"
	natssink "github.com/outboxgo/outbox/sink/nats"
)

func TestMain(m *testing.M) {
	service.SkipExamples("Example") // it uses PostgreSQL and NATS
	os.Exit(m.Run())
}

// Example consumes what the nats sink published into an inbox on PostgreSQL.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, pgtest.URL())
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	in, err := inbox.New(ctx, inbox.Config{Pool: pool, Consumer: "example", Table: "natsinbox_example"})
	if err != nil {
		panic(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		panic(err)
	}
	defer func() { _, _ = in.MigrateDown(ctx, 0) }()

	// The producer's side: a stream and the sink (the relay publishes through it).
	stream := "NATSINBOX_EXAMPLE_" + outbox.NewID().String()[24:]
	s, err := natssink.New(ctx, natssink.Config{URL: natstest.URL(), SubjectPrefix: stream + ".",
		Stream: &jetstream.StreamConfig{Name: stream, Subjects: []string{stream + ".>"}}})
	if err != nil {
		panic(err)
	}
	defer func() { _ = s.Close() }()
	rec := &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: "orders", Key: "order-1", Payload: []byte(`{}`)}, Seq: 1}
	if err := s.Publish(ctx, []*outbox.Record{rec})[0]; err != nil {
		panic(err)
	}

	a, err := natsinbox.New(natsinbox.Config{Inbox: in, URL: natstest.URL(), Stream: stream, SubjectPrefix: stream + "."})
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
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM natsinbox_example WHERE message_id = $1`, rec.ID.String()).Scan(&n); err != nil {
			panic(err)
		}
	}
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	// Delete the example's stream.
	if js, err := jetstream.New(s.Conn()); err == nil {
		_ = js.DeleteStream(context.Background(), stream)
	}
	// Output:
	// handling orders order-1
}
