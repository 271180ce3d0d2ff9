package sourcetest

import (
	"context"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/relay"
)

// ReplayStore is what ReplaySeen needs of the outbox's store: it publishes the messages once
// by claiming them (as a polling relay does, retaining them) and replays them.
type ReplayStore interface {
	dialect.Claimer
	dialect.Replayer
	Enqueue(ctx context.Context, msgs ...outbox.Message) error
}

// ReplaySeen: messages a polling relay published and retained, replayed while the log source
// streams, are published by it again, with their message ids, in key order (a replay moves
// each row by a delete and an insert, and a log source reads inserts). Acknowledged, the
// replayed rows are deleted like any other the source publishes: rows counts the table's.
func ReplaySeen[S Source](t *testing.T, env Env[S], store ReplayStore, streaming func(S) bool, rows func(tb testing.TB) int) {
	t.Helper()
	ctx := context.Background()
	msgs := []outbox.Message{{Topic: "t", Key: "a", Payload: []byte("a:0")}, {Topic: "t", Key: "b", Payload: []byte("b:0")},
		{Topic: "t", Key: "a", Payload: []byte("a:1")}}
	from := time.Now()
	if err := store.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	c, err := store.Claim(ctx, dialect.ClaimRequest{Limit: 10, Retain: true})
	if err != nil {
		t.Fatal(err)
	}
	var o outbox.Outcome
	for _, r := range c.Records() {
		o.Published = append(o.Published, r.Seq)
		for i := range msgs {
			if string(msgs[i].Payload) == string(r.Payload) {
				msgs[i].ID = r.ID
			}
		}
	}
	if err := c.Finish(ctx, o); err != nil {
		t.Fatal(err)
	}
	src := env.NewSource()
	sk := NewSink()
	StartRelay(t, src, sk, relay.Config{})
	WaitFor(t, 30*time.Second, "streaming", func() bool { return streaming(src) })
	n, err := dialect.Replay(ctx, store, dialect.ReplayFilter{From: from, To: time.Now().Add(time.Minute)}, 2, nil)
	if err != nil || n != 3 {
		t.Fatalf("Replay = %d, %v; want 3", n, err)
	}
	got := sk.AwaitOnce(t, 30*time.Second, 3)
	ids := map[string]bool{}
	var order []string
	for _, r := range got {
		ids[r.ID.String()] = true
		if r.Key == "a" {
			order = append(order, string(r.Payload))
		}
	}
	for _, m := range msgs {
		if !ids[m.ID.String()] {
			t.Fatalf("message %s (%s) not published again with its id: %+v", m.ID, m.Payload, got)
		}
	}
	if len(order) != 2 || order[0] != "a:0" || order[1] != "a:1" {
		t.Fatalf("key a published as %v, want a:0 then a:1", order)
	}
	WaitFor(t, 10*time.Second, "acknowledged rows deleted", func() bool { return rows(t) == 0 })
}
