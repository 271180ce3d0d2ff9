package integration_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/relay/relaytest"
)

// A key whose head backs off for an hour, with more later messages than a batch holds, must
// not hold up other keys of its partition (the claim would fill with its messages).
func TestBlockedKeyDoesNotStallPartition(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var msgs []outbox.Message
	for i := range 120 {
		msgs = append(msgs, outbox.Message{Topic: "t", Key: "stuck", Payload: fmt.Appendf(nil, "stuck:%d", i)})
	}
	msgs = append(msgs, outbox.Message{Topic: "t", Key: "free", Payload: []byte("free:0")})
	if err := b.store.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	// The head was retried by some earlier relay: nothing in this relay's memory knows it.
	if _, err := b.pool.Exec(ctx, `UPDATE `+b.table+` SET attempts = 1, available_at = now() + interval '1 hour'
		WHERE id = (SELECT min(id) FROM `+b.table+`)`); err != nil {
		t.Fatal(err)
	}
	sk := relaytest.NewSink()
	startRelay(t, b, sk, poll.Config{BatchSize: 50, Workers: 1, PollInterval: 50 * time.Millisecond}, relay.Config{})
	waitFor(t, 5*time.Second, "the free key's message", func() bool { return sk.Unique() == 1 })
	got := sk.Acked()
	if got[0].Key != "free" {
		t.Fatalf("delivered key %s, want free (stuck must wait for its head)", got[0].Key)
	}
}

// Relays dedicated to different topics split the key space only among their own group.
func TestTopicRelaysCoverEverything(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var msgs []outbox.Message
	for i := range 40 {
		msgs = append(msgs,
			outbox.Message{Topic: "orders", Key: fmt.Sprint("o", i), Payload: fmt.Appendf(nil, "o%d:0", i)},
			outbox.Message{Topic: "notify.sms", Key: fmt.Sprint("u", i), Payload: fmt.Appendf(nil, "u%d:0", i)})
	}
	if err := b.store.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	orders, sms := relaytest.NewSink(), relaytest.NewSink()
	hb := poll.Config{HeartbeatInterval: 20 * time.Millisecond, MemberTTL: time.Second}
	a, s := hb, hb
	a.RelayID, a.Topics = "orders-relay", []string{"orders"}
	s.RelayID, s.Topics = "sms-relay", []string{"notify.sms"}
	startRelay(t, b, orders, a, relay.Config{})
	startRelay(t, b, sms, s, relay.Config{})
	waitFor(t, 10*time.Second, "every message", func() bool { return orders.Unique() == 40 && sms.Unique() == 40 })
	got := sms.Acked()
	for _, r := range got {
		if r.Topic != "notify.sms" {
			t.Fatalf("sms relay published topic %s", r.Topic)
		}
	}
}

// Relays with different worker counts (a rolling config change) still cover every key.
func TestRelaysWithDifferentWorkerCounts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := relaytest.NewSink()
	n := produce(t, b, 60, 3, 60)
	for i, workers := range []int{2, 4} {
		startRelay(t, b, sk, poll.Config{RelayID: fmt.Sprint("r", i), Workers: workers,
			HeartbeatInterval: 20 * time.Millisecond, MemberTTL: time.Second}, relay.Config{})
	}
	waitFor(t, 20*time.Second, "every message", func() bool { return sk.Unique() == n })
	delivered := sk.Acked()
	checkOrder(t, delivered)
}

// A row no relay can decode (headers not an object, written by hand) goes to the dead letters
// instead of failing every claim.
func TestUnreadableRowIsDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	if _, err := b.pool.Exec(ctx, `ALTER TABLE `+b.table+` DROP CONSTRAINT outbox_headers_object`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.pool.Exec(ctx, `INSERT INTO `+b.table+` (message_id, topic, key, headers) VALUES (gen_random_uuid(), 't', 'k', '["not","an","object"]')`); err != nil {
		t.Fatal(err)
	}
	if err := b.store.Enqueue(ctx, outbox.Message{Topic: "t", Key: "k", Payload: []byte("k:0")}); err != nil {
		t.Fatal(err)
	}
	sk := relaytest.NewSink()
	startRelay(t, b, sk, poll.Config{}, relay.Config{})
	// The dead letter is written with the claim's Finish, after the readable message was published.
	waitFor(t, 10*time.Second, "the readable message and the dead letter", func() bool {
		st, err := b.store.Stats(ctx)
		return sk.Unique() == 1 && err == nil && st.DeadLetters == 1
	})
	dls, err := b.store.DeadLetters(ctx, 0, 10)
	if err != nil || len(dls) != 1 || !strings.Contains(dls[0].LastError, "unreadable row") {
		t.Fatalf("dead letters = %+v, %v", dls, err)
	}
}
