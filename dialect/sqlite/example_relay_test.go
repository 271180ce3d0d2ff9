package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/sqlite"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/sink"
)

// printSink prints what it is given; a real service would use sink/nats or another broker.
type printSink struct{ mu sync.Mutex }

func (s *printSink) Publish(_ context.Context, msgs []*outbox.Record) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		fmt.Printf("published %s key=%s %s\n", m.Topic, m.Key, m.Payload)
	}
	return make([]error, len(msgs)) // all acknowledged
}

func (s *printSink) Close() error { return nil }

// doneAfter cancels the relay once n messages are published.
type doneAfter struct {
	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
}

func (d *doneAfter) OnBatchFinished(_ []outbox.Record, o outbox.Outcome, _ error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n -= len(o.Published); d.n <= 0 {
		d.cancel()
	}
}

// Run a relay inside a service on SQLite: the poll source claims committed messages from the
// outbox table and the relay publishes them to a sink, in per-key order, deleting each after
// its ack.
func Example_relay() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir, err := os.MkdirTemp("", "relay-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	store, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(dir, "app.db")})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if _, err := store.MigrateUp(ctx); err != nil {
		log.Fatal(err)
	}
	if err := store.Enqueue(ctx,
		outbox.Message{Topic: "orders.created", Key: "o-1", Payload: []byte(`{"id":"o-1"}`)},
		outbox.Message{Topic: "orders.paid", Key: "o-1", Payload: []byte(`{"id":"o-1"}`)},
	); err != nil {
		log.Fatal(err)
	}

	src, err := poll.New(poll.Config{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	var out sink.Sink = &printSink{}
	r, err := relay.New(relay.Config{Source: src, Sink: out, Hooks: []relay.Hook{&doneAfter{n: 2, cancel: cancel}}})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Run(ctx); err != nil { // returns once ctx ends and in-flight work is finished
		log.Fatal(err)
	}
	st, _ := store.Stats(context.Background())
	fmt.Println("pending:", st.Pending)
	// Output:
	// published orders.created key=o-1 {"id":"o-1"}
	// published orders.paid key=o-1 {"id":"o-1"}
	// pending: 0
}
