package integration_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/sink/nats"
)

func TestNATSEndToEnd(t *testing.T) {
	t.Parallel()
	b := setup(t)
	nc := natstest.Connect(t)
	stream, prefix := natstest.Stream(t, nc)
	sk, err := nats.New(context.Background(), nats.Config{URL: natstest.URL(), SubjectPrefix: prefix, Source: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sk.Close() })
	rcv := natstest.Receiver(t, nc, stream, prefix)
	n := produce(t, b, 20, 25, 10)
	startRelay(t, b, sk, poll.Config{}, relay.Config{})
	got := sourcetest.DrainStream(t, rcv, n, 60*time.Second)
	if dups := sourcetest.CheckStreamOrder(t, got); dups != 0 {
		t.Fatalf("%d duplicates in the happy path", dups)
	}
	if m := got[0]; m.Source != "shop" || m.SpecVersion != "1.0" || m.Type != "test.orders" || m.Time == "" || m.Headers["Nats-Msg-Id"] != m.ID {
		t.Fatalf("envelope = %+v", m)
	}
}

// TestNATSOutage stops the broker for 30 seconds while producers keep committing: every
// message arrives once it is back, in per-key order, and none is dead-lettered.
func TestNATSOutage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := natstest.StartServer(t, nil)
	nc := natstest.ConnectURL(t, srv.URL())
	stream, prefix := natstest.Stream(t, nc)
	sk, err := nats.New(context.Background(), nats.Config{URL: srv.URL(), SubjectPrefix: prefix,
		PublishTimeout: time.Second, ReconnectWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sk.Close() })
	startRelay(t, b, sk, poll.Config{}, relay.Config{BackoffBase: 100 * time.Millisecond, BackoffMax: 2 * time.Second})

	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		committed int
	)
	wg.Add(1)
	go func() { // a steady producer over 10 keys, 50 commits/s
		defer wg.Done()
		seq := 0
		for ctx.Err() == nil {
			msgs := make([]outbox.Message, 10)
			for k := range msgs {
				key := fmt.Sprint("k", k)
				msgs[k] = outbox.Message{Topic: "outage", Key: key, Payload: fmt.Appendf(nil, "%s:%d", key, seq)}
			}
			if err := b.store.Enqueue(context.Background(), msgs...); err != nil {
				t.Errorf("enqueue: %v", err)
				return
			}
			mu.Lock()
			committed += len(msgs)
			mu.Unlock()
			seq++
			time.Sleep(20 * time.Millisecond)
		}
	}()
	time.Sleep(2 * time.Second) // traffic flowing before the outage
	srv.Shutdown()
	time.Sleep(30 * time.Second)
	srv.Restart()
	time.Sleep(2 * time.Second) // traffic flowing after it
	cancel()
	wg.Wait()

	// A fresh connection: the first one may have given up while the server was away.
	nc2 := natstest.ConnectURL(t, srv.URL())
	rcv := natstest.Receiver(t, nc2, stream, prefix)
	got := sourcetest.DrainStream(t, rcv, committed, 60*time.Second)
	dups := sourcetest.CheckStreamOrder(t, got)
	st, err := b.store.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.DeadLetters != 0 {
		t.Fatalf("%d messages dead-lettered during a 30s outage", st.DeadLetters)
	}
	t.Logf("committed %d, delivered all in order, %d duplicates", committed, dups)
}

// TestNATSPayloadTooLargeGoesToDeadLetters: the broker refuses the message, the relay records
// why and goes on with the key.
func TestNATSPayloadTooLargeGoesToDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	srv := natstest.StartServer(t, &server.Options{NoLog: true, MaxPayload: 4096})
	nc := natstest.ConnectURL(t, srv.URL())
	stream, prefix := natstest.Stream(t, nc)
	sk, err := nats.New(context.Background(), nats.Config{URL: srv.URL(), SubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sk.Close() })
	startRelay(t, b, sk, poll.Config{}, relay.Config{})
	big := make([]byte, int(nc.MaxPayload())+1)
	if err := b.store.Enqueue(context.Background(),
		outbox.Message{Topic: "big", Key: "a", Payload: big},
		outbox.Message{Topic: "big", Key: "a", Payload: []byte("a:0")}); err != nil {
		t.Fatal(err)
	}
	got := sourcetest.DrainStream(t, natstest.Receiver(t, nc, stream, prefix), 1, 30*time.Second)
	if string(got[0].Payload) != "a:0" {
		t.Fatalf("received %q", got[0].Payload)
	}
	dls, err := b.store.DeadLetters(context.Background(), 0, 10)
	if err != nil || len(dls) != 1 || dls[0].Record.Attempts != 1 {
		t.Fatalf("dead letters = %+v, %v", dls, err)
	}
	t.Logf("dead letter reason: %s", dls[0].LastError)
}
