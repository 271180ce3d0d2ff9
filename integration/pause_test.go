package integration_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/relay/relaytest"
	"github.com/outboxgo/outbox/sink/route"
)

// pauseBacklog commits the messages of the pause tests: test.orders for keys k0..k9 (5
// each), test.mail for keys m0..m4 (3 each), and one test.mail message of k0 after its
// orders, which has to wait behind them. It returns the count.
func pauseBacklog(t *testing.T, b *bundle) int {
	t.Helper()
	n := produce(t, b, 10, 5, 10)
	var mail []outbox.Message
	for i := range 3 {
		for k := range 5 {
			key := fmt.Sprint("m", k)
			mail = append(mail, outbox.Message{Topic: "test.mail", Key: key, Payload: relaytest.Payload(key, i)})
		}
	}
	mail = append(mail, outbox.Message{Topic: "test.mail", Key: "k0", Payload: relaytest.Payload("k0", 5)})
	if err := b.store.Enqueue(context.Background(), mail...); err != nil {
		t.Fatal(err)
	}
	return n + len(mail)
}

// checkPaused checks that, while test.orders is held, the 15 messages of the m keys were
// delivered and nothing of the k keys, and that the held rows are untouched: no attempt, no
// error, no backoff written.
func checkPaused(t *testing.T, b *bundle, sk *relaytest.Sink) {
	t.Helper()
	waitFor(t, 30*time.Second, "the m keys' mail", func() bool { return sk.Unique() == 15 })
	time.Sleep(500 * time.Millisecond) // many pause intervals and polls
	for _, r := range sk.Acked() {
		if r.Topic != "test.mail" || r.Key[0] != 'm' {
			t.Fatalf("delivered %s %s during the pause", r.Topic, r.Payload)
		}
	}
	var touched int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+b.table+
		` WHERE attempts > 0 OR last_error IS NOT NULL OR available_at > now()`).Scan(&touched); err != nil {
		t.Fatal(err)
	}
	if p := pending(t, b); p != 51 || touched != 0 {
		t.Fatalf("during the pause: %d pending (want 51), %d rows with an attempt, error or backoff (want 0)", p, touched)
	}
}

// A topic paused in the table holds its messages on both relays of the table, with the later
// messages of their keys; the other topic flows; resumed, everything is delivered in key
// order, once.
func TestPauseTopicTwoRelays(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if err := b.store.Pause(ctx, dialect.Pause{Kind: dialect.PauseTopic, Name: "test.orders", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	n := pauseBacklog(t, b)
	sk := relaytest.NewSink()
	for i := range 2 {
		startRelay(t, b, sk, poll.Config{RelayID: fmt.Sprint("relay-", i), BatchSize: 7, HeartbeatInterval: 50 * time.Millisecond, MemberTTL: time.Second},
			relay.Config{Pauses: b.store, PauseInterval: 20 * time.Millisecond})
	}
	checkPaused(t, b, sk)
	if err := b.store.Resume(ctx, dialect.PauseTopic, "test.orders"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every message after the resume", func() bool { return sk.Unique() == n && pending(t, b) == 0 })
	if d := checkOrder(t, sk.Acked()); d != 0 {
		t.Fatalf("%d duplicates", d)
	}
}

// A paused sink (a route's) receives nothing while paused, on both relays; the other route
// flows; the relays learn which topics go to the paused sink and leave them in the table
// untouched; resumed, everything is delivered in key order.
func TestPauseSinkTwoRelays(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if err := b.store.Pause(ctx, dialect.Pause{Kind: dialect.PauseSink, Name: "orders-sink"}); err != nil {
		t.Fatal(err)
	}
	n := pauseBacklog(t, b)
	sk := relaytest.NewSink() // behind both routes: one delivery order to check
	for i := range 2 {
		rt, err := route.New([]route.Route{
			{Pattern: "test.orders", Name: "orders-sink", Sink: sk},
			{Pattern: "test.mail", Name: "mail-sink", Sink: sk},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		startRelay(t, b, rt, poll.Config{RelayID: fmt.Sprint("relay-", i), BatchSize: 7, HeartbeatInterval: 50 * time.Millisecond, MemberTTL: time.Second},
			relay.Config{Pauses: b.store, PauseInterval: 20 * time.Millisecond})
	}
	checkPaused(t, b, sk)
	if err := b.store.Resume(ctx, dialect.PauseSink, "orders-sink"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every message after the resume", func() bool { return sk.Unique() == n && pending(t, b) == 0 })
	if d := checkOrder(t, sk.Acked()); d != 0 {
		t.Fatalf("%d duplicates", d)
	}
}
