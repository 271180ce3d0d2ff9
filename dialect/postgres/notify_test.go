package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/postgres"
)

// On a schema of migrations 4 and 5 (a relay upgraded before its schema), a commit's
// notification lists the partition hashes of the keys it inserted, and they route the message
// to the one worker share whose claim takes it; a statement with more than 64 keys lists none
// (every worker wakes).
func TestListenReportsKeyHashes(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := s.MigrationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	steps := 0
	for _, m := range st {
		if m.Applied && m.Version > 5 {
			steps++
		}
	}
	if _, err := s.MigrateDown(ctx, steps); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenGate(ctx, time.Second); !errors.Is(err, dialect.ErrNoGate) {
		t.Fatalf("OpenGate on a schema of migration 5: %v, want ErrNoGate", err)
	}
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

// From migration 6 a commit notifies only while the gate is open: not before a relay opens
// it, within the lease after, not once it is closed, and not once its lease has run out and
// a relay has moved the clock.
func TestGate(t *testing.T) {
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
	select {
	case <-wakes: // connected
	case <-time.After(10 * time.Second):
		t.Fatal("the listener did not connect")
	}
	notified := func(within time.Duration) bool {
		select {
		case h := <-wakes:
			if h != nil {
				t.Errorf("hashes %v: the gated trigger lists none", h)
			}
			return true
		case <-time.After(within):
			return false
		}
	}
	open := func(lease time.Duration) bool {
		t.Helper()
		was, err := s.OpenGate(ctx, lease)
		if err != nil {
			t.Fatal(err)
		}
		return was
	}
	enqueue(t, s, keyed("k", 1))
	if notified(300 * time.Millisecond) {
		t.Fatal("a commit notified before any relay opened the gate")
	}
	// A lease that runs out shuts the gate once a relay moves the clock.
	if open(100 * time.Millisecond) {
		t.Fatal("OpenGate: the gate was open before")
	}
	enqueue(t, s, keyed("k", 2))
	if !notified(5 * time.Second) {
		t.Fatal("no notification with the gate open")
	}
	time.Sleep(150 * time.Millisecond)
	enqueue(t, s, keyed("k", 3))
	if !notified(5 * time.Second) {
		t.Fatal("no notification before any relay moved the clock")
	}
	if err := s.AdvanceGate(ctx); err != nil {
		t.Fatal(err)
	}
	enqueue(t, s, keyed("k", 4))
	if notified(300 * time.Millisecond) {
		t.Fatal("a commit notified after the lease ran out and the clock moved")
	}
	// A shorter lease does not move the deadline back.
	if open(2 * time.Second) {
		t.Fatal("OpenGate after the lease ran out: the gate was open before")
	}
	if !open(time.Millisecond) {
		t.Fatal("OpenGate: the gate was shut, want open")
	}
	time.Sleep(50 * time.Millisecond)
	if err := s.AdvanceGate(ctx); err != nil {
		t.Fatal(err)
	}
	enqueue(t, s, keyed("k", 5))
	if !notified(5 * time.Second) {
		t.Fatal("a shorter lease closed the gate")
	}
	// CloseGate shuts it at once, whoever opened it; it opens again after.
	if err := s.CloseGate(ctx); err != nil {
		t.Fatal(err)
	}
	enqueue(t, s, keyed("k", 6))
	if notified(300 * time.Millisecond) {
		t.Fatal("a commit notified after CloseGate")
	}
	if open(time.Second) {
		t.Fatal("OpenGate after CloseGate: the gate was open before")
	}
	enqueue(t, s, keyed("k", 7))
	if !notified(5 * time.Second) {
		t.Fatal("no notification once reopened after CloseGate")
	}
}

// InProgress lists a transaction that inserted and has not committed; Running drops it once
// it has.
func TestGateInProgress(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var xid uint64
	if err := tx.QueryRow(ctx, `INSERT INTO `+postgres.TableOf(s)+` (message_id, topic) VALUES (gen_random_uuid(), 't') RETURNING pg_current_xact_id()::text::bigint`).Scan(&xid); err != nil {
		t.Fatal(err)
	}
	txs, err := s.InProgress(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(txs, xid) {
		t.Fatalf("in progress %v, want %d among them", txs, xid)
	}
	running, err := s.Running(ctx, []uint64{xid})
	if err != nil || !slices.Equal(running, []uint64{xid}) {
		t.Fatalf("Running = %v, %v; want [%d]", running, err, xid)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	running, err = s.Running(ctx, []uint64{xid})
	if err != nil || len(running) != 0 {
		t.Fatalf("Running after the commit = %v, %v; want none", running, err)
	}
}
