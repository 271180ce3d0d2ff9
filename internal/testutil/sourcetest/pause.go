package sourcetest

import (
	"context"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/relaytest"
)

// PausedTopicHeld runs a relay over a log source, which delivers every message it reads,
// with pauses (the outbox's store) paused on topic "test.paused": the relay must hold that
// topic's messages (not publish, confirm or drop them) and the later messages of their keys,
// while the rest flows; resumed, everything is delivered once, in key order. pending reads the
// source's pending messages (read, not done).
func PausedTopicHeld[S Source](t *testing.T, env Env[S], pauses dialect.Pauser, pending func(S) int) {
	t.Helper()
	ctx := context.Background()
	if err := pauses.Pause(ctx, dialect.Pause{Kind: dialect.PauseTopic, Name: "test.paused", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	src := env.NewSource()
	if err := src.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	sk := NewSink()
	StartRelay(t, src, sk, relay.Config{Pauses: pauses, PauseInterval: 20 * time.Millisecond})
	m := func(topic, key string, n int) outbox.Message {
		return outbox.Message{Topic: topic, Key: key, Payload: relaytest.Payload(key, n)}
	}
	// Key a: its first message is paused, its second waits behind it; b flows.
	env.Commit(t, m("test.paused", "a", 0), m("test.orders", "a", 1), m("test.orders", "b", 0))
	env.Commit(t, m("test.orders", "b", 1), m("test.paused", "a", 2))
	n := 5 + env.produce(t, 5, 0, 4, 5)
	WaitFor(t, 30*time.Second, "the unpaused keys", func() bool { return sk.Unique() == n-3 })
	time.Sleep(300 * time.Millisecond) // many pause intervals
	delivered, _ := sk.Snapshot()
	for _, r := range delivered {
		if r.Key == "a" {
			t.Fatalf("delivered %s %s during the pause", r.Topic, r.Payload)
		}
	}
	if p := pending(src); p != 3 {
		t.Fatalf("the source holds %d messages during the pause, want key a's 3", p)
	}
	if err := pauses.Resume(ctx, dialect.PauseTopic, "test.paused"); err != nil {
		t.Fatal(err)
	}
	sk.AwaitOnce(t, 30*time.Second, n)
	WaitFor(t, 10*time.Second, "nothing pending", func() bool { return pending(src) == 0 })
}
