package binlog_test

import (
	"context"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay"
)

// TestReplaySeen: messages a polling relay published and retained, replayed while a binlog
// source streams, are published by it again, with their message ids, in key order (a replay
// moves each row by a delete and an insert, and the source reads inserts).
func TestReplaySeen(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	msgs := []outbox.Message{{Topic: "t", Key: "a", Payload: []byte("a:0")}, {Topic: "t", Key: "b", Payload: []byte("b:0")},
		{Topic: "t", Key: "a", Payload: []byte("a:1")}}
	from := time.Now()
	if err := e.store.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	c, err := e.store.Claim(ctx, dialect.ClaimRequest{Limit: 10, Retain: true})
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
	src := e.source(t, e.config(t))
	sk := sourcetest.NewSink()
	sourcetest.StartRelay(t, src, sk, relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
	n, err := dialect.Replay(ctx, e.store, dialect.ReplayFilter{From: from, To: time.Now().Add(time.Minute)}, 2, nil)
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
	// Acknowledged, the replayed rows are deleted like any the source publishes.
	sourcetest.WaitFor(t, 10*time.Second, "acknowledged rows deleted", func() bool { return e.rows(t) == 0 })
}
