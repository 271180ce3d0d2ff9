package relay_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/relaytest"
)

// An operator pause holds a topic's messages while the others flow; resumed, they go out.
// Config.Pauses is any dialect.Pauser: the outbox's store in a service (the pauses live in
// its table), relaytest's in-memory one here.
func ExampleConfig_pauses() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var pauses relaytest.Pauses
	if err := pauses.Pause(ctx, dialect.Pause{Kind: dialect.PauseTopic, Name: "orders.created", Reason: "consumer deploy"}); err != nil {
		log.Fatal(err)
	}
	src := relaytest.NewSource(relaytest.SourceConfig{})
	src.Enqueue(
		outbox.Message{Topic: "orders.created", Key: "o-1", Payload: []byte(`{"id":"o-1"}`)},
		outbox.Message{Topic: "mail.sent", Key: "m-1", Payload: []byte(`{"id":"m-1"}`)},
	)
	r, err := relay.New(relay.Config{Source: src, Sink: &printSink{}, Pauses: &pauses, PauseInterval: 10 * time.Millisecond,
		Hooks: []relay.Hook{stopWhenDrained{src: src, cancel: cancel}}})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		for len(src.Published()) == 0 {
			time.Sleep(time.Millisecond)
		}
		fmt.Println("held:", src.Stats().Pending)
		if err := pauses.Resume(ctx, dialect.PauseTopic, "orders.created"); err != nil {
			log.Fatal(err)
		}
	}()
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// published mail.sent key=m-1 {"id":"m-1"}
	// held: 1
	// published orders.created key=o-1 {"id":"o-1"}
}
