package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
)

// With a poll interval of a minute, only a commit notification can deliver within seconds.
func TestNotifyWakesRelay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sk := newMemSink()
	startRelay(t, b, sk, poll.Config{PollInterval: time.Minute}, relay.Config{})
	ctx := context.Background()
	// Let the workers go idle after their first (empty) claims.
	waitFor(t, 10*time.Second, "the listener", func() bool { return listeners(t, b) == 1 })
	for i := range 3 {
		start := time.Now()
		if err := b.store.Enqueue(ctx, outbox.Message{Topic: "t", Key: "k"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "a notified delivery", func() bool { return sk.unique() == i+1 })
		t.Logf("delivered %v after commit", time.Since(start))
	}
	// Kill the listening session: the relay reconnects and notifications work again.
	if _, err := b.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN outbox_insert' AND application_name = $1`, appName(t, b)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the listener to come back", func() bool { return listeners(t, b) == 1 })
	if err := b.store.Enqueue(ctx, outbox.Message{Topic: "t", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a notified delivery after reconnect", func() bool { return sk.unique() == 4 })
}

func appName(t *testing.T, b *bundle) string {
	t.Helper()
	return b.pool.Config().ConnConfig.RuntimeParams["application_name"]
}

// listeners counts sessions of this test's pool listening for notifications.
func listeners(t *testing.T, b *bundle) int {
	t.Helper()
	var n int
	err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN outbox_insert' AND application_name = $1`, appName(t, b)).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
