package relay_test

import (
	"context"
	"fmt"
	"log"
	"sync"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/relaytest"
)

// printSink is a sink.Sink of one's own: it prints what it is given and acknowledges it. A
// real service uses sink/nats, sink/kafka or another broker's sink.
type printSink struct{ mu sync.Mutex }

func (s *printSink) Publish(_ context.Context, msgs []*outbox.Record) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		fmt.Printf("published %s key=%s %s\n", m.Topic, m.Key, m.Payload)
	}
	return make([]error, len(msgs)) // one result per message: all acknowledged
}

func (s *printSink) Close() error { return nil }

// stopWhenDrained is a hook (relay.HookBatchFinished) that stops the relay once its source
// has nothing left to publish.
type stopWhenDrained struct {
	src    *relaytest.Source
	cancel context.CancelFunc
}

func (h stopWhenDrained) OnBatchFinished([]outbox.Record, outbox.Outcome, error) {
	if h.src.Stats().Pending == 0 {
		h.cancel()
	}
}

// A relay publishes what its source claims to its sink, in per-key order, and reports each
// outcome back to the source. Here the source is relaytest's in-memory one; a service uses
// relay/poll over its outbox table (see dialect/sqlite's example), relay/wal or relay/binlog.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	src := relaytest.NewSource(relaytest.SourceConfig{})
	src.Enqueue(
		outbox.Message{Topic: "orders.created", Key: "o-1", Payload: []byte(`{"id":"o-1"}`)},
		outbox.Message{Topic: "orders.paid", Key: "o-1", Payload: []byte(`{"id":"o-1"}`)},
	)
	r, err := relay.New(relay.Config{Source: src, Sink: &printSink{},
		Hooks: []relay.Hook{stopWhenDrained{src: src, cancel: cancel}}})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Run(ctx); err != nil { // returns once ctx ends and in-flight work is finished
		log.Fatal(err)
	}
	fmt.Println("pending:", src.Stats().Pending)
	// Output:
	// published orders.created key=o-1 {"id":"o-1"}
	// published orders.paid key=o-1 {"id":"o-1"}
	// pending: 0
}
