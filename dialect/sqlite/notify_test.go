package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/sqlite"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
)

// timingSink records when each message (by payload) was published.
type timingSink struct {
	mu  sync.Mutex
	at  map[string]time.Time
	got chan struct{}
}

func (s *timingSink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	now := time.Now()
	s.mu.Lock()
	for _, m := range msgs {
		if _, ok := s.at[string(m.Payload)]; !ok {
			s.at[string(m.Payload)] = now
		}
	}
	s.mu.Unlock()
	select {
	case s.got <- struct{}{}:
	default:
	}
	return make([]error, len(msgs))
}

func (s *timingSink) Close() error { return nil }

func (s *timingSink) publishedAt(p string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.at[p]
	return at, ok
}

// wakeCase runs a relay with a poll interval of ten minutes, so that only commit
// notifications can deliver in time, commits n messages at random moments through commit,
// and fails if any was published later than bound after its commit returned: a missed
// wake-up would leave a message for the whole interval.
func wakeCase(t *testing.T, s *sqlite.Store, n int, bound time.Duration, commit func(ctx context.Context, i int) error) {
	t.Helper()
	ctx := ctxT(t)
	sk := &timingSink{at: map[string]time.Time{}, got: make(chan struct{}, 1)}
	src, err := poll.New(poll.Config{Store: s, PollInterval: 10 * time.Minute, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{Source: src, Sink: sk})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	time.Sleep(50 * time.Millisecond) // the workers claim once and go idle

	committed := make([]time.Time, n)
	for i := range n {
		// Random gaps: some commits land while a worker claims, some while it is idle.
		if g := rand.IntN(4); g > 0 {
			time.Sleep(time.Duration(rand.IntN(3000*g)) * time.Microsecond)
		}
		if err := commit(ctx, i); err != nil {
			t.Fatalf("commit %d: %v", i, err)
		}
		committed[i] = time.Now()
	}
	var worst time.Duration
	for i := range n {
		p := fmt.Sprint(i)
		deadline := committed[i].Add(bound)
		for {
			at, ok := sk.publishedAt(p)
			if ok {
				worst = max(worst, at.Sub(committed[i]))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("message %d not published %s after its commit (a missed wake-up waits for the 10-minute poll)", i, bound)
			}
			select {
			case <-sk.got:
			case <-time.After(time.Millisecond):
			}
		}
	}
	t.Logf("%d messages, slowest published %s after its commit", n, worst)
}

// enqueueTx commits message i in a business transaction on db, with the store's Writer.
func enqueueTx(ctx context.Context, s *sqlite.Store, db *sql.DB, i int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := s.Writer().Enqueue(ctx, tx, outbox.Message{Topic: "t", Key: fmt.Sprint("k", i%7), Payload: fmt.Append(nil, i)}); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// TestWakeInProcess: commits on the store's own connections wake the relay through the
// commit hook alone (the periodic data_version read is off).
func TestWakeInProcess(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	s, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "outbox.db"), WatchInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	wakeCase(t, s, 300, 2*time.Second, func(ctx context.Context, i int) error {
		if i%5 == 0 { // plain SQL outside a transaction commits too
			_, err := s.DB().ExecContext(ctx, `INSERT INTO outbox (message_id, topic, key, payload) VALUES (?, 't', 'plain', ?)`,
				outbox.NewID().String(), fmt.Sprint(i))
			return err
		}
		return enqueueTx(ctx, s, s.DB(), i)
	})
}

// TestWakeOtherConnection: commits on a database the store did not open (another program's
// connections, or a DB given in Config.DB) wake the relay through PRAGMA data_version.
func TestWakeOtherConnection(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	path := filepath.Join(t.TempDir(), "outbox.db")
	other, err := sql.Open(sqlite.DriverName, sqlite.DSN(path))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, given := range []bool{false, true} {
		t.Run(fmt.Sprintf("given_db=%v", given), func(t *testing.T) {
			cfg := sqlite.Config{Path: path, Table: fmt.Sprintf("outbox_%v", given)}
			if given {
				cfg = sqlite.Config{DB: other, Table: cfg.Table}
			}
			s, err := sqlite.New(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.MigrateUp(ctx); err != nil {
				t.Fatal(err)
			}
			wakeCase(t, s, 150, 2*time.Second, func(ctx context.Context, i int) error {
				return enqueueTx(ctx, s, other, i)
			})
		})
	}
}
