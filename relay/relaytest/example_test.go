package relaytest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/relaytest"
	"github.com/outboxgo/outbox/sink"
)

// A relay over an in-memory source and a scripted sink: one message fails its first attempt
// and is retried, one is refused for good and dead-lettered; per-key order holds.
func Example() {
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	sk.Script(relaytest.Rule{Key: "k1", Attempt: 1, Times: 1, Err: errors.New("broker busy")})
	sk.Script(relaytest.Rule{
		Match: func(r *outbox.Record) bool { return string(r.Payload) == "k2:1" },
		Err:   sink.Permanentf("payload too large"),
	})
	src.Enqueue(relaytest.Messages(3, 0, 2)...) // k0:0 k1:0 k2:0 k0:1 k1:1 k2:1

	r, err := relay.New(relay.Config{Source: src, Sink: sk,
		BackoffBase: time.Millisecond, BackoffMax: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	for src.Stats().Pending > 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		fmt.Println(err)
	}

	byKey := src.PublishedByKey()
	for _, key := range []string{"k0", "k1", "k2"} {
		for _, rec := range byKey[key] {
			fmt.Printf("published %s after %d failed attempts\n", rec.Payload, rec.Attempts)
		}
	}
	for _, d := range src.DeadLetters() {
		fmt.Printf("dead letter %s (attempts %d): %s\n", d.Record.Payload, d.Record.Attempts, d.Reason)
	}
	// Output:
	// published k0:0 after 0 failed attempts
	// published k0:1 after 0 failed attempts
	// published k1:0 after 1 failed attempts
	// published k1:1 after 0 failed attempts
	// published k2:0 after 0 failed attempts
	// dead letter k2:1 (attempts 1): payload too large
}

// A sink whose broker is down for one topic until the test heals it, and rate-limits
// another once, saying when to come back.
func ExampleSink_Script() {
	sk := relaytest.NewSink()
	heal := sk.Script(relaytest.Rule{Topic: "orders", Err: sink.Unavailable(errors.New("connection refused"))})
	sk.Script(relaytest.Rule{Topic: "mail", Times: 1, Err: errors.New("429 too many requests"), RetryAfter: time.Minute})
	recs := []*outbox.Record{
		{Seq: 1, Message: outbox.Message{ID: outbox.NewID(), Topic: "orders", Key: "o-1"}},
		{Seq: 2, Message: outbox.Message{ID: outbox.NewID(), Topic: "mail", Key: "u-1"}},
	}
	publish := func() {
		for i, err := range sk.Publish(context.Background(), recs) {
			var ra sink.RetryAfter
			switch {
			case err == nil:
				fmt.Printf("%s: acknowledged\n", recs[i].Topic)
			case errors.As(err, &ra):
				fmt.Printf("%s: %v, retry after %v\n", recs[i].Topic, err, ra.RetryAfter())
			default:
				fmt.Printf("%s: %v (sink unavailable: %v)\n", recs[i].Topic, err, sink.IsUnavailable(err))
			}
		}
	}
	publish()
	heal()
	publish()
	fmt.Println("acknowledged:", sk.Unique(), "calls:", len(sk.Calls()))
	// Output:
	// orders: connection refused (sink unavailable: true)
	// mail: 429 too many requests, retry after 1m0s
	// orders: acknowledged
	// mail: acknowledged
	// acknowledged: 2 calls: 2
}

// A database that refuses dead letters: the batch's Finish fails, nothing is recorded, and
// the message is released unchanged, to be claimed again.
func ExampleSource_SetFinishError() {
	ctx := context.Background()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	src.Enqueue(outbox.Message{Topic: "orders", Key: "o-1"})
	src.SetFinishError(func(o outbox.Outcome) error {
		if len(o.Dead) > 0 {
			return errors.New("dead letters refused")
		}
		return nil
	})
	b, _ := src.Next(ctx)
	dead := outbox.Outcome{Dead: []outbox.Dead{{Seq: b.Records()[0].Seq, Error: "rejected"}}}
	fmt.Println("finish:", b.Finish(ctx, dead))
	fmt.Println("pending:", src.Stats().Pending, "dead letters:", len(src.DeadLetters()))

	src.SetFinishError(nil)
	b, _ = src.Next(ctx)
	fmt.Println("finish:", b.Finish(ctx, dead))
	fmt.Println("pending:", src.Stats().Pending, "dead letters:", len(src.DeadLetters()))
	// Output:
	// finish: dead letters refused
	// pending: 1 dead letters: 0
	// finish: <nil>
	// pending: 0 dead letters: 1
}

// Order checks deliveries as they come: duplicates pass, a gap in a key's numbers does not.
func ExampleOrder() {
	var o relaytest.Order
	fmt.Println(o.Add("id-1", "k0", relaytest.Payload("k0", 0)))
	fmt.Println(o.Add("id-1", "k0", relaytest.Payload("k0", 0))) // delivered again
	fmt.Println(o.Add("id-3", "k0", relaytest.Payload("k0", 2))) // k0:1 lost or late
	fmt.Println("unique:", o.Unique(), "duplicates:", o.Duplicates())
	// Output:
	// <nil>
	// <nil>
	// key k0: got n 2, want 1 (order violated: a message lost or overtaken)
	// unique: 1 duplicates: 1
}
