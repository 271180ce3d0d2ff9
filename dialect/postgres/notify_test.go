package postgres_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/postgres"
)

// A commit's notification lists the partition hashes of the keys it inserted, and they route
// the message to the one worker share whose claim takes it; a statement with more than 64
// keys lists none (every worker wakes).
func TestListenReportsKeyHashes(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	wakes := make(chan []uint64, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Listen(ctx, func(h []uint64) { wakes <- h })
	}()
	t.Cleanup(func() { cancel(); <-done })
	next := func() []uint64 {
		t.Helper()
		select {
		case h := <-wakes:
			return h
		case <-time.After(10 * time.Second):
			t.Fatal("no notification")
			return nil
		}
	}
	if h := next(); h != nil {
		t.Fatalf("first wake-up (connected) = %v, want nil: all workers", h)
	}

	enqueue(t, s, keyed("k1", 1), keyed("k2", 1), keyed("k1", 2))
	got := next()
	var want []uint64
	if err := s.Pool().QueryRow(ctx, `SELECT array_agg(hashtextextended(k, 0) & 9223372036854775807 ORDER BY k)
		FROM unnest(ARRAY['k1', 'k2']) AS k`).Scan(&want); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("hashes %v, want %v (k1, k2 once each)", got, want)
	}
	// The hash puts the key in exactly the share whose claim returns it.
	for _, h := range got {
		var takers []string
		for part := range 3 {
			for slot := range 4 {
				c, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10, Partition: part, Partitions: 3, Slot: slot, Slots: 4})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range c.Records() {
					var rh uint64
					if err := s.Pool().QueryRow(ctx, `SELECT hashtextextended($1, 0) & 9223372036854775807`, r.Key).Scan(&rh); err != nil {
						t.Fatal(err)
					}
					if rh == h {
						takers = append(takers, fmt.Sprint(part, "/", slot))
						if !dialect.InShare(h, part, 3, slot, 4) {
							t.Errorf("share %d/%d claimed key %s but InShare says no", part, slot, r.Key)
						}
						break
					}
				}
				if err := c.Finish(ctx, outbox.Outcome{}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if len(takers) != 1 {
			t.Errorf("hash %d claimed by shares %v, want exactly one", h, takers)
		}
	}

	many := make([]outbox.Message, 65)
	for i := range many {
		many[i] = keyed(fmt.Sprintf("m%d", i), 1)
	}
	enqueue(t, s, many...)
	if h := next(); h != nil {
		t.Fatalf("65 keys: hashes %v, want nil: all workers", h)
	}
	if _, err := s.Pool().Exec(ctx, `INSERT INTO `+postgres.TableOf(s)+` (message_id, topic) SELECT gen_random_uuid(), 't' WHERE false`); err != nil {
		t.Fatal(err)
	}
	enqueue(t, s, outbox.Message{Topic: "t"}) // keyless: hashed by message id
	if h := next(); len(h) != 1 {
		t.Fatalf("after an empty insert and a keyless message: %v, want one hash (the empty insert does not notify)", h)
	}
}
