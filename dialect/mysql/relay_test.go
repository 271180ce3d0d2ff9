package mysql_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/internal/testutil/mysqltest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/sink"
)

// memSink records deliveries in the order they were acknowledged and can fail chosen
// messages. Several relays may share one, so the record is one timeline.
type memSink struct {
	mu        sync.Mutex
	delivered []outbox.Record
	count     map[string]int // message id → deliveries
	fail      func(r *outbox.Record) error
	calls     atomic.Int64
}

func newMemSink() *memSink { return &memSink{count: map[string]int{}} }

func (s *memSink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	s.calls.Add(1)
	res := make([]error, len(msgs))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range msgs {
		if err := ctx.Err(); err != nil {
			res[i] = err
			continue
		}
		if s.fail != nil {
			if err := s.fail(m); err != nil {
				res[i] = err
				continue
			}
		}
		s.delivered = append(s.delivered, *m)
		s.count[m.ID.String()]++
	}
	return res
}

func (s *memSink) Close() error { return nil }

func (s *memSink) snapshot() ([]outbox.Record, map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(map[string]int, len(s.count))
	for k, v := range s.count {
		c[k] = v
	}
	return append([]outbox.Record(nil), s.delivered...), c
}

func (s *memSink) unique() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.count)
}

// countingSink counts what one relay published through a shared sink.
type countingSink struct {
	sink.Sink
	n atomic.Int64
}

func (c *countingSink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	res := c.Sink.Publish(ctx, msgs)
	for _, err := range res {
		if err == nil {
			c.n.Add(1)
		}
	}
	return res
}

// startRelay runs a relay with its own store (as a separate process would) on dsn until the
// test ends.
func startRelay(t *testing.T, dsn string, sk sink.Sink, pcfg poll.Config, rcfg relay.Config) *poll.Source {
	t.Helper()
	store, err := mysql.New(context.Background(), mysql.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	pcfg.Store = store
	pcfg.PollInterval = 10 * time.Millisecond
	src, err := poll.New(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	rcfg.Source, rcfg.Sink = src, sk
	rcfg.BackoffBase, rcfg.BackoffMax = 5*time.Millisecond, 50*time.Millisecond
	r, err := relay.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relay.Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("relay did not stop within 30s")
		}
	})
	return src
}

// produce commits perKey messages for each of keys keys, perTx per business transaction,
// each payload "key:seq" with a per-key sequence starting at from.
func produce(t *testing.T, s *mysql.Store, keys, from, perKey, perTx int) int {
	t.Helper()
	ctx := ctxT(t)
	var msgs []outbox.Message
	for i := from; i < from+perKey; i++ {
		for k := range keys {
			key := fmt.Sprintf("k%d", k)
			msgs = append(msgs, outbox.Message{Topic: "test.orders", Key: key, Payload: []byte(key + ":" + strconv.Itoa(i))})
		}
	}
	for start := 0; start < len(msgs); start += perTx {
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Writer().Enqueue(ctx, tx, msgs[start:min(start+perTx, len(msgs))]...); err != nil {
			_ = tx.Rollback()
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	return len(msgs)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkOrder verifies that, per key, first deliveries arrive in sequence order.
func checkOrder(t *testing.T, delivered []outbox.Record) {
	t.Helper()
	next := map[string]int{}
	seen := map[string]bool{}
	for _, r := range delivered {
		if seen[r.ID.String()] {
			continue // a duplicate: allowed, order is judged on first delivery
		}
		seen[r.ID.String()] = true
		key, num, _ := strings.Cut(string(r.Payload), ":")
		n, _ := strconv.Atoi(num)
		if key != r.Key || n != next[r.Key] {
			t.Fatalf("key %s: got %s, want seq %d (order violated)", r.Key, r.Payload, next[r.Key])
		}
		next[r.Key] = n + 1
	}
}

func pendingOf(t *testing.T, s *mysql.Store) int64 {
	t.Helper()
	st, err := s.Stats(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return st.Pending
}

// Two relays on one table, producers committing meanwhile and a flaky broker: every message
// arrives, each key in commit order, and the relays share the work.
func TestRelaysShareTableInKeyOrder(t *testing.T) {
	t.Parallel()
	_, dsn, _ := mysqltest.Database(t)
	producer := newStoreOn(t, dsn)
	sk := newMemSink()
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	sk.fail = func(*outbox.Record) error {
		mu.Lock()
		defer mu.Unlock()
		if rng.IntN(5) == 0 {
			return errors.New("injected broker error")
		}
		return nil
	}
	n := produce(t, producer, 30, 0, 20, 25)
	var (
		sinks [2]*countingSink
		srcs  [2]*poll.Source
	)
	for i := range sinks {
		sinks[i] = &countingSink{Sink: sk}
		srcs[i] = startRelay(t, dsn, sinks[i], poll.Config{RelayID: fmt.Sprint("relay-", i), BatchSize: 50,
			HeartbeatInterval: 50 * time.Millisecond, MemberTTL: time.Second}, relay.Config{MaxAttempts: 1000})
	}
	n += produce(t, producer, 30, 20, 20, 10)
	waitFor(t, 90*time.Second, "all messages", func() bool { return sk.unique() == n })
	waitFor(t, 10*time.Second, "an empty outbox", func() bool { return pendingOf(t, producer) == 0 })
	delivered, _ := sk.snapshot()
	checkOrder(t, delivered)
	for i, s := range sinks {
		if s.n.Load() == 0 {
			t.Errorf("relay %d published nothing: the relays did not share the table", i)
		}
		if m := srcs[i].Membership(); m.Count != 2 {
			t.Errorf("relay %d membership = %+v, want 2 relays", i, m)
		}
	}
	if st, err := producer.Stats(ctxT(t)); err != nil || st.DeadLetters != 0 {
		t.Fatalf("Stats = %+v, %v; want no dead letters", st, err)
	}
}

// The claims' database sessions are killed right after a publish: the transactions die before
// their deletes commit. Nothing is lost; the messages claimed again keep their order.
func TestRelayConnectionsCutMidBatch(t *testing.T) {
	t.Parallel()
	admin, dsn, name := mysqltest.Database(t)
	producer := newStoreOn(t, dsn)
	sk := newMemSink()
	var (
		once   sync.Once
		killed atomic.Int64
	)
	sk.fail = func(*outbox.Record) error {
		once.Do(func() {
			// Every open transaction of the test's database: the claims.
			rows, err := admin.QueryContext(context.Background(), `SELECT t.trx_mysql_thread_id FROM information_schema.INNODB_TRX t
JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id WHERE p.DB = ?`, name)
			if err != nil {
				t.Errorf("listing transactions: %v", err)
				return
			}
			defer rows.Close()
			var ids []int64
			for rows.Next() {
				var id int64
				if rows.Scan(&id) == nil {
					ids = append(ids, id)
				}
			}
			if err := rows.Err(); err != nil {
				t.Errorf("listing transactions: %v", err)
			}
			for _, id := range ids {
				if _, err := admin.ExecContext(context.Background(), "KILL "+strconv.FormatInt(id, 10)); err == nil {
					killed.Add(1)
				}
			}
		})
		return nil
	}
	n := produce(t, producer, 5, 0, 10, 20)
	startRelay(t, dsn, sk, poll.Config{RelayID: "a", BatchSize: 20}, relay.Config{})
	startRelay(t, dsn, sk, poll.Config{RelayID: "b", BatchSize: 20}, relay.Config{})
	waitFor(t, 60*time.Second, "all messages and an empty outbox", func() bool {
		return sk.unique() == n && pendingOf(t, producer) == 0
	})
	if killed.Load() == 0 {
		t.Fatal("no claim transaction was killed")
	}
	delivered, count := sk.snapshot()
	dups := 0
	for _, c := range count {
		dups += c - 1
	}
	// No duplicate is not a failure: the relay remembers the outcome its killed claim could
	// not record and applies it when it claims those rows again (relay/memo.go); only a claim
	// by the other relay republishes them.
	t.Logf("%d messages, %d sessions killed, %d duplicates", n, killed.Load(), dups)
	checkOrder(t, delivered)
}

// newStoreOn returns a migrated store with its own pool on dsn.
func newStoreOn(t *testing.T, dsn string) *mysql.Store {
	t.Helper()
	s, err := mysql.New(ctxT(t), mysql.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.MigrateUp(ctxT(t)); err != nil {
		t.Fatalf("MigrateUp: %v", err)
	}
	return s
}
