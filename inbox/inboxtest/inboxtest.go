// Package inboxtest is the inbox's scenario suite, run against every dialect by the tests of
// package inbox (PostgreSQL, MariaDB) and of dialect/sqlite (SQLite).
package inboxtest

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
)

// Env is one database for the suite.
type Env struct {
	// Config is the inbox configuration (Dialect, Table, DB or Pool); the suite sets
	// Consumer and MaxAttempts.
	Config inbox.Config
	// Begin opens a consumer transaction: a pgx.Tx or a *sql.Tx.
	Begin func(ctx context.Context) (outbox.Tx, error)
	// Exec runs a statement (in the dialect's placeholders) outside any consumer transaction.
	Exec func(ctx context.Context, q string, args ...any) (int64, error)
	// Count runs a query of one integer.
	Count func(ctx context.Context, q string, args ...any) (int, error)
	// Quote quotes the name of the table Config.Table plus suffix ("", "_keys", "_effects").
	Quote func(suffix string) string
	// Outbox is the name of an outbox table (as outbox.WriterConfig takes it), migrated, for
	// handlers that enqueue.
	Outbox string
	// Concurrent says the database takes concurrent writers (not SQLite).
	Concurrent bool
}

// Exec runs q in tx, whatever its driver.
func Exec(ctx context.Context, tx outbox.Tx, q string, args ...any) error {
	switch tx := tx.(type) {
	case pgx.Tx:
		_, err := tx.Exec(ctx, q, args...)
		return err
	case *sql.Tx:
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}
	return outbox.ErrUnsupportedTx
}

func finish(ctx context.Context, tx outbox.Tx, commit bool) error {
	switch tx := tx.(type) {
	case pgx.Tx:
		if commit {
			return tx.Commit(ctx)
		}
		return tx.Rollback(ctx)
	case *sql.Tx:
		if commit {
			return tx.Commit()
		}
		return tx.Rollback()
	}
	return outbox.ErrUnsupportedTx
}

type suite struct {
	t   *testing.T
	env Env
	in  *inbox.Inbox
	ph  func(string) string
}

func (s *suite) exec(q string, args ...any) int64 {
	s.t.Helper()
	n, err := s.env.Exec(context.Background(), q, args...)
	if err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (s *suite) count(q string, args ...any) int {
	s.t.Helper()
	n, err := s.env.Count(context.Background(), q, args...)
	if err != nil {
		s.t.Fatalf("%s: %v", q, err)
	}
	return n
}

func (s *suite) effects(id string) int {
	s.t.Helper()
	return s.count(s.ph(`SELECT count(*) FROM `+s.env.Quote("_effects")+` WHERE message_id = ?`), id)
}

// effect is a handler writing one effect row in the consumer's transaction.
func (s *suite) effect(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
	return Exec(ctx, tx, s.ph(`INSERT INTO `+s.env.Quote("_effects")+` (message_id) VALUES (?)`), m.ID)
}

// deliver runs one delivery as an adapter would: Attempt, Process in a transaction, commit
// or roll back, Failed.
func (s *suite) deliver(m inbox.Message, h inbox.Handler) (inbox.Result, error) {
	s.t.Helper()
	ctx := context.Background()
	if _, err := s.in.Attempt(ctx, m); err != nil {
		return 0, err
	}
	tx, err := s.env.Begin(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	res, err := s.in.Process(ctx, tx, m, h)
	if err != nil {
		if rerr := finish(ctx, tx, false); rerr != nil {
			s.t.Fatal(rerr)
		}
		if ferr := s.in.Failed(ctx, m, err); ferr != nil {
			s.t.Fatal(ferr)
		}
		return 0, err
	}
	if err := finish(ctx, tx, true); err != nil {
		s.t.Fatal(err)
	}
	return res, nil
}

// expire ages the processed ids of ms out of the window and runs DeleteExpired, which
// deletes them and folds their positions into the keys' (and deletes nothing else here).
func (s *suite) expire(ms ...inbox.Message) {
	s.t.Helper()
	old := time.Now().Add(-8 * 24 * time.Hour).UnixMicro()
	for _, m := range ms {
		if n := s.exec(s.ph(`UPDATE `+s.env.Quote("")+` SET processed_at = ? WHERE message_id = ?`), old, m.ID); n != 1 {
			s.t.Fatalf("aged %d id rows of %s", n, m.ID)
		}
	}
	if n, err := s.in.DeleteExpired(context.Background(), 0); err != nil || n != int64(len(ms)) {
		s.t.Fatalf("DeleteExpired = %d, %v; want %d", n, err, len(ms))
	}
}

// position is key's folded position in the keys table (0 if it has none).
func (s *suite) position(key string) int {
	s.t.Helper()
	return s.count(s.ph(`SELECT coalesce(max(position), 0) FROM `+s.env.Quote("_keys")+` WHERE consumer = ? AND `+keyColumn(s.in.Dialect())+` = ?`), s.in.Consumer(), key)
}

func keyColumn(d outbox.Dialect) string {
	if d == outbox.MySQL {
		return "`key`"
	}
	return "key"
}

func (s *suite) want(m inbox.Message, want inbox.Result) {
	s.t.Helper()
	got, err := s.deliver(m, s.effect)
	if err != nil || got != want {
		s.t.Fatalf("deliver %s (key %q pos %d) = %v, %v; want %v", m.ID, m.Key, m.Position, got, err, want)
	}
}

// Msg returns a new message of key at position pos, created now.
func Msg(key string, pos int64) inbox.Message {
	return inbox.Message{ID: uuid.NewString(), Topic: "orders", Type: "order.created", Source: "test", Key: key,
		Time: time.Now(), Headers: map[string]string{"h": "v"}, Payload: []byte(`{"n":1}`), Position: pos}
}

// Run runs the suite; newEnv gives each subtest a fresh database.
func Run(t *testing.T, newEnv func(t *testing.T) Env) {
	setup := func(t *testing.T, maxAttempts int) *suite {
		env := newEnv(t)
		cfg := env.Config
		cfg.Consumer = "billing"
		cfg.MaxAttempts = maxAttempts
		in, err := inbox.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := in.MigrateUp(context.Background()); err != nil {
			t.Fatal(err)
		}
		s := &suite{t: t, env: env, in: in, ph: func(q string) string { return q }}
		if cfg.Dialect == outbox.Postgres || cfg.Dialect == "" {
			s.ph = dollarsOf
		}
		if _, err := env.Exec(context.Background(), `CREATE TABLE `+env.Quote("_effects")+` (message_id VARCHAR(255) NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("Processed", func(t *testing.T) { processed(t, setup(t, 10)) }) // processed.go
	t.Run("Stats", func(t *testing.T) { stats(t, setup(t, 10)) })         // stats.go
	t.Run("AppliedOnceThenDuplicate", func(t *testing.T) {
		s := setup(t, 10)
		m := Msg("", 0)
		s.want(m, inbox.Applied)
		s.want(m, inbox.Duplicate)
		if n := s.effects(m.ID); n != 1 {
			t.Fatalf("effects = %d, want 1", n)
		}
		if n := s.count(`SELECT count(*) FROM ` + s.env.Quote("_attempts")); n != 0 {
			t.Errorf("attempt rows left after success = %d", n)
		}
	})
	t.Run("Concurrent", func(t *testing.T) {
		s := setup(t, 100)
		if !s.env.Concurrent {
			t.Skip("one writer at a time")
		}
		const n = 4 // within the test pools (pgxpool defaults to 4 connections on this machine)
		for round := range 5 {
			m := Msg("k", int64(round+1))
			var (
				barrier sync.WaitGroup
				wg      sync.WaitGroup
				mu      sync.Mutex
				results = map[inbox.Result]int{}
				errs    []error
			)
			barrier.Add(n)
			for range n {
				wg.Go(func() {
					ctx := context.Background()
					res, err := func() (inbox.Result, error) {
						if _, err := s.in.Attempt(ctx, m); err != nil {
							barrier.Done()
							return 0, err
						}
						tx, err := s.env.Begin(ctx)
						if err != nil {
							barrier.Done()
							return 0, err
						}
						barrier.Done()
						barrier.Wait() // every copy reaches the insert together
						res, err := s.in.Process(ctx, tx, m, s.effect)
						if err != nil {
							_ = finish(ctx, tx, false)
							return 0, err
						}
						return res, finish(ctx, tx, true)
					}()
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						errs = append(errs, err)
						return
					}
					results[res]++
				})
			}
			wg.Wait()
			if len(errs) > 0 {
				t.Fatalf("round %d: errors: %v", round, errs)
			}
			if results[inbox.Applied] != 1 || results[inbox.Duplicate] != n-1 {
				t.Fatalf("round %d: results = %v, want 1 applied and %d duplicates", round, results, n-1)
			}
			if got := s.effects(m.ID); got != 1 {
				t.Fatalf("round %d: effects = %d, want 1", round, got)
			}
		}
	})
	t.Run("PoisonDeadLetteredThenRetried", func(t *testing.T) {
		s := setup(t, 3)
		ctx := context.Background()
		m := Msg("acct", 5)
		calls := 0
		boom := func(context.Context, outbox.Tx, inbox.Message) error {
			calls++
			return errors.New("boom " + string(rune('0'+calls)))
		}
		for i := range 3 {
			if _, err := s.deliver(m, boom); err == nil || !strings.HasPrefix(err.Error(), "boom") {
				t.Fatalf("delivery %d: err = %v, want the handler's", i+1, err)
			}
		}
		if _, err := s.in.Attempt(ctx, m); !errors.Is(err, inbox.ErrDeadLettered) {
			t.Fatalf("4th attempt: err = %v, want ErrDeadLettered", err)
		}
		if calls != 3 {
			t.Fatalf("handler calls = %d, want 3", calls)
		}
		dead, err := s.in.DeadLetters(ctx, 0, 10)
		if err != nil || len(dead) != 1 {
			t.Fatalf("dead letters = %+v, %v", dead, err)
		}
		d := dead[0]
		if d.Message.ID != m.ID || d.Attempts != 3 || d.Error != "boom 3" || d.Message.Key != "acct" || d.Message.Position != 5 ||
			string(d.Message.Payload) != `{"n":1}` || d.Message.Headers["h"] != "v" || !d.Message.Time.Equal(m.Time.Truncate(time.Microsecond)) {
			t.Fatalf("dead letter = %+v", d)
		}
		// Redeliveries after the dead letter are duplicates.
		s.want(m, inbox.Duplicate)
		// A later message of the key is applied; the retried one must still be.
		later := Msg("acct", 9)
		s.want(later, inbox.Applied)
		retried, err := s.in.RetryDeadLetters(ctx, []int64{d.ID})
		if err != nil || len(retried) != 1 || retried[0].Message.ID != m.ID {
			t.Fatalf("retry = %+v, %v", retried, err)
		}
		if dead, err := s.in.DeadLetters(ctx, 0, 10); err != nil || len(dead) != 0 {
			t.Fatalf("dead letters after retry = %+v, %v", dead, err)
		}
		// A retried letter is not run until the consumer's Redrive: a failing one goes back.
		if n, err := s.in.Redrive(ctx, boom); err != nil || n != 0 {
			t.Fatalf("failing redrive = %d, %v", n, err)
		}
		dead, err = s.in.DeadLetters(ctx, 0, 10)
		if err != nil || len(dead) != 1 || dead[0].Attempts != 4 || dead[0].Error != "boom 4" {
			t.Fatalf("dead letters after a failed redrive = %+v, %v", dead, err)
		}
		if _, err := s.in.RetryDeadLetters(ctx, []int64{d.ID}); err != nil {
			t.Fatal(err)
		}
		if retried, err := s.in.RetryDeadLetters(ctx, []int64{d.ID}); err != nil || len(retried) != 0 {
			t.Fatalf("second mark = %+v, %v; want none (marked already)", retried, err)
		}
		// Applied although a later message of its key was (old enough to be Stale otherwise).
		if n, err := s.in.Redrive(ctx, s.effect); err != nil || n != 1 {
			t.Fatalf("redrive = %d, %v", n, err)
		}
		if n, err := s.in.Redrive(ctx, s.effect); err != nil || n != 0 {
			t.Fatalf("second redrive = %d, %v", n, err)
		}
		if dead, err := s.in.DeadLetters(ctx, 0, 10); err != nil || len(dead) != 0 {
			t.Fatalf("dead letters after redrive = %+v, %v", dead, err)
		}
		if n := s.count(`SELECT count(*) FROM ` + s.env.Quote("_dead")); n != 0 {
			t.Fatalf("%d dead rows after redrive", n)
		}
		s.want(m, inbox.Duplicate) // the broker's redeliveries remain duplicates
		if n := s.effects(m.ID); n != 1 {
			t.Fatalf("effects = %d, want 1", n)
		}
		// When their ids expire, the key keeps the greatest position: 9, not lowered by the
		// letter's 5.
		s.expire(m, later)
		if p := s.position("acct"); p != 9 {
			t.Fatalf("key position = %d, want 9 (not lowered)", p)
		}
	})
	t.Run("PurgeDeadLetters", func(t *testing.T) {
		s := setup(t, 1)
		ctx := context.Background()
		m := Msg("", 0)
		fail := func(context.Context, outbox.Tx, inbox.Message) error { return errors.New("no") }
		if _, err := s.deliver(m, fail); err == nil {
			t.Fatal("want the handler's error")
		}
		if _, err := s.in.Attempt(ctx, m); !errors.Is(err, inbox.ErrDeadLettered) {
			t.Fatalf("err = %v", err)
		}
		dead, err := s.in.DeadLetters(ctx, 0, 10)
		if err != nil || len(dead) != 1 {
			t.Fatalf("dead = %v, %v", dead, err)
		}
		if n, err := s.in.PurgeDeadLetters(ctx, []int64{dead[0].ID, dead[0].ID + 1000}); err != nil || n != 1 {
			t.Fatalf("purge = %d, %v", n, err)
		}
		if dead, _ := s.in.DeadLetters(ctx, 0, 10); len(dead) != 0 {
			t.Fatalf("dead after purge = %v", dead)
		}
		s.want(m, inbox.Duplicate)
	})
	t.Run("CrashBeforeCommitCounted", func(t *testing.T) {
		s := setup(t, 10)
		ctx := context.Background()
		m := Msg("", 0)
		if n, err := s.in.Attempt(ctx, m); err != nil || n != 1 {
			t.Fatalf("attempt = %d, %v", n, err)
		}
		tx, err := s.env.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res, err := s.in.Process(ctx, tx, m, s.effect); err != nil || res != inbox.Applied {
			t.Fatalf("process = %v, %v", res, err)
		}
		if err := finish(ctx, tx, false); err != nil { // the process dies before the commit
			t.Fatal(err)
		}
		if n, err := s.in.Attempt(ctx, m); err != nil || n != 2 {
			t.Fatalf("attempt after the crash = %d, %v; want 2", n, err)
		}
		if n := s.effects(m.ID); n != 0 {
			t.Fatalf("effects = %d", n)
		}
		s.want(m, inbox.Applied)
	})
	t.Run("LateDuplicateAndOutOfOrder", func(t *testing.T) {
		s := setup(t, 10)
		a := Msg("order-1", 5)
		s.want(a, inbox.Applied)
		if p := s.position("order-1"); p != 0 {
			t.Fatalf("key position = %d before any id expired, want none", p)
		}
		// Its id ages out of the window: retention deletes it and keeps its key's position.
		s.expire(a)
		if p := s.position("order-1"); p != 5 {
			t.Fatalf("key position = %d, want 5", p)
		}
		late := a
		late.Time = time.Now().Add(-8 * 24 * time.Hour)
		s.want(late, inbox.Stale)
		untimed := a
		untimed.ID = uuid.NewString()
		untimed.Time = time.Time{}
		s.want(untimed, inbox.Stale)
		// Unknown id, lower position, within the window: a first delivery out of order.
		b := Msg("order-1", 3)
		s.want(b, inbox.Applied)
		// An old message at 4 is stale: 4 <= 5.
		c := Msg("order-1", 4)
		c.Time = time.Now().Add(-8 * 24 * time.Hour)
		s.want(c, inbox.Stale)
		if n := s.effects(a.ID); n != 1 {
			t.Fatalf("effects of a = %d, want 1", n)
		}
		if n := s.effects(c.ID); n != 0 {
			t.Fatalf("effects of stale c = %d", n)
		}
		// A later message whose id is still kept does not make an old one stale: its id is
		// what catches its own copies, and the old one was never applied.
		d := Msg("order-1", 7)
		s.want(d, inbox.Applied)
		e := Msg("order-1", 6)
		e.Time = time.Now().Add(-8 * 24 * time.Hour)
		s.want(e, inbox.Applied)
		// When they expire, the key's position moves to 7, and late copies of both are stale.
		s.expire(b, d, e)
		if p := s.position("order-1"); p != 7 {
			t.Fatalf("key position = %d, want 7", p)
		}
		for _, m := range []inbox.Message{d, e} {
			m.Time = time.Now().Add(-8 * 24 * time.Hour)
			s.want(m, inbox.Stale)
		}
		// In a batch, the same.
		f, g := Msg("order-1", 8), Msg("order-1", 2)
		f.Time = time.Now().Add(-8 * 24 * time.Hour)
		g.Time = f.Time
		out, err := s.in.DeliverBatch(context.Background(), []inbox.Delivery{{Message: g}, {Message: late}, {Message: c}, {Message: f}}, s.effect)
		if err != nil || out[0].Result != inbox.Stale || out[1].Result != inbox.Duplicate || out[2].Result != inbox.Duplicate || out[3].Result != inbox.Applied {
			t.Fatalf("batch = %+v, %v; want stale, duplicate, duplicate, applied", out, err)
		}
	})
	t.Run("LateCopyDuringRetention", func(t *testing.T) {
		// A late copy delivered while retention deletes its id: the copy finds either the id
		// (Duplicate) or the key's position (Stale), never neither.
		s := setup(t, 10)
		ctx := context.Background()
		for i := range 40 {
			m := Msg("k", int64(i+1))
			s.want(m, inbox.Applied)
			s.exec(s.ph(`UPDATE `+s.env.Quote("")+` SET processed_at = ? WHERE message_id = ?`), time.Now().Add(-8*24*time.Hour).UnixMicro(), m.ID)
			late := m
			late.Time = time.Now().Add(-8 * 24 * time.Hour)
			errs := make(chan error, 1)
			go func() {
				_, err := s.in.DeleteExpired(ctx, 0)
				errs <- err
			}()
			o, err := s.in.Deliver(ctx, inbox.Delivery{Message: late, Redelivered: true}, s.effect)
			if err != nil || (o.Result != inbox.Duplicate && o.Result != inbox.Stale) {
				t.Fatalf("round %d: late copy = %+v, %v; want Duplicate or Stale", i, o, err)
			}
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
			if n := s.effects(m.ID); n != 1 {
				t.Fatalf("round %d: %d effects, want 1", i, n)
			}
		}
	})
	t.Run("EnqueueInHandler", func(t *testing.T) {
		s := setup(t, 10)
		w, err := outbox.NewWriter(outbox.WriterConfig{Dialect: s.in.Dialect(), Table: s.env.Outbox})
		if err != nil {
			t.Fatal(err)
		}
		m := Msg("order-1", 1)
		next := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
			if err := s.effect(ctx, tx, m); err != nil {
				return err
			}
			return w.Enqueue(ctx, tx, outbox.Message{Topic: "invoices", Key: m.Key, Payload: m.Payload})
		}
		if res, err := s.deliver(m, next); err != nil || res != inbox.Applied {
			t.Fatalf("deliver = %v, %v", res, err)
		}
		if res, err := s.deliver(m, next); err != nil || res != inbox.Duplicate {
			t.Fatalf("redeliver = %v, %v", res, err)
		}
		if n := s.count(`SELECT count(*) FROM ` + s.env.Outbox); n != 1 {
			t.Fatalf("outbox rows = %d, want 1", n)
		}
	})
	t.Run("Retention", func(t *testing.T) {
		s := setup(t, 10)
		ctx := context.Background()
		var ms []inbox.Message
		for i := range 5 {
			m := Msg("k"+string(rune('a'+i)), 1)
			s.want(m, inbox.Applied)
			ms = append(ms, m)
		}
		fresh := Msg("", 0)
		s.want(fresh, inbox.Applied)
		old := time.Now().Add(-8 * 24 * time.Hour).UnixMicro()
		for _, m := range ms {
			s.exec(s.ph(`UPDATE `+s.env.Quote("")+` SET processed_at = ? WHERE message_id = ?`), old, m.ID)
		}
		// In batches of 2: the 5 ids go, their keys' positions are kept.
		n, err := s.in.DeleteExpired(ctx, 2)
		if err != nil || n != 5 {
			t.Fatalf("DeleteExpired = %d, %v; want 5 ids", n, err)
		}
		if n := s.count(`SELECT count(*) FROM ` + s.env.Quote("")); n != 1 {
			t.Fatalf("ids left = %d, want 1", n)
		}
		if n := s.count(`SELECT count(*) FROM ` + s.env.Quote("_keys")); n != 5 {
			t.Fatalf("key positions = %d, want 5", n)
		}
		s.want(fresh, inbox.Duplicate)
		m := ms[0]
		m.Time = time.Now().Add(-8 * 24 * time.Hour)
		m.ID = uuid.NewString()
		s.want(m, inbox.Stale) // caught by the key's position
		// Positions idle for longer than KeyRetention go too.
		s.exec(s.ph(`UPDATE `+s.env.Quote("_keys")+` SET updated_at = ?`), time.Now().Add(-100*24*time.Hour).UnixMicro())
		if n, err := s.in.DeleteExpired(ctx, 2); err != nil || n != 5 {
			t.Fatalf("DeleteExpired = %d, %v; want 5 key positions", n, err)
		}
		m = ms[1]
		m.Time = time.Now().Add(-8 * 24 * time.Hour)
		s.want(m, inbox.Applied) // forgotten: id and key both gone
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.in.RunRetention(rctx, time.Millisecond) }()
		time.Sleep(20 * time.Millisecond)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("RunRetention = %v", err)
		}
	})
	t.Run("Migrations", func(t *testing.T) {
		s := setup(t, 10)
		ctx := context.Background()
		st, err := s.in.MigrationStatus(ctx)
		if err != nil || len(st) == 0 || !st[0].Applied {
			t.Fatalf("status = %+v, %v", st, err)
		}
		if again, err := s.in.MigrateUp(ctx); err != nil || len(again) != 0 {
			t.Fatalf("second MigrateUp = %v, %v", again, err)
		}
		down, err := s.in.MigrateDown(ctx, 0)
		if err != nil || len(down) != len(st) {
			t.Fatalf("down = %v, %v", down, err)
		}
		if st, err := s.in.MigrationStatus(ctx); err != nil || st[0].Applied {
			t.Fatalf("status after down = %+v, %v", st, err)
		}
		if up, err := s.in.MigrateUp(ctx); err != nil || len(up) != len(st) {
			t.Fatalf("up again = %v, %v", up, err)
		}
		s.want(Msg("", 0), inbox.Applied)
	})
	t.Run("Deliver", func(t *testing.T) {
		s := setup(t, 2)
		ctx := context.Background()
		attempts := func() int { return s.count(`SELECT count(*) FROM ` + s.env.Quote("_attempts")) }
		m := Msg("k", 1)
		o, err := s.in.Deliver(ctx, inbox.Delivery{Message: m}, s.effect)
		if err != nil || o.Result != inbox.Applied || o.Retry || o.Attempt != 0 {
			t.Fatalf("first delivery = %+v, %v", o, err)
		}
		if n := attempts(); n != 0 {
			t.Fatalf("a first delivery that succeeds left %d attempt rows", n)
		}
		if o, err := s.in.Deliver(ctx, inbox.Delivery{Message: m, Redelivered: true}, s.effect); err != nil || o.Result != inbox.Duplicate {
			t.Fatalf("redelivery = %+v, %v", o, err)
		}
		if o, err := s.in.Deliver(ctx, inbox.Delivery{Message: m}, s.effect); err != nil || o.Result != inbox.Duplicate {
			t.Fatalf("copy = %+v, %v", o, err)
		}

		// A failing first delivery is counted when it fails; redeliveries before the handler.
		p := Msg("k", 2)
		boom := errors.New("boom")
		fail := func(context.Context, outbox.Tx, inbox.Message) error { return boom }
		o, err = s.in.Deliver(ctx, inbox.Delivery{Message: p}, fail)
		if err != nil || !o.Retry || !errors.Is(o.Err, boom) || o.Attempt != 1 || o.Delay != inbox.DefaultBackoff(1) {
			t.Fatalf("failing delivery = %+v, %v", o, err)
		}
		o, err = s.in.Deliver(ctx, inbox.Delivery{Message: p, Redelivered: true}, fail)
		if err != nil || !o.Retry || o.Attempt != 2 || o.Delay != inbox.DefaultBackoff(2) {
			t.Fatalf("failing redelivery = %+v, %v", o, err)
		}
		o, err = s.in.Deliver(ctx, inbox.Delivery{Message: p, Redelivered: true}, s.effect)
		if err != nil || o.Result != inbox.DeadLettered || o.Attempt != 3 {
			t.Fatalf("third delivery, max 2 = %+v, %v", o, err)
		}
		if n := s.effects(p.ID); n != 0 {
			t.Fatalf("effects of the dead letter = %d", n)
		}
		dead, err := s.in.DeadLetters(ctx, 0, 10)
		if err != nil || len(dead) != 1 || dead[0].Error != "boom" || dead[0].Attempts != 2 {
			t.Fatalf("dead letters = %+v, %v", dead, err)
		}
		if n := attempts(); n != 0 {
			t.Fatalf("attempt rows after the dead letter = %d", n)
		}
	})
	t.Run("Reject", func(t *testing.T) {
		s := setup(t, 10)
		ctx := context.Background()
		m := inbox.Message{ID: "broker:stream:7", Topic: "orders", Payload: []byte{0xff, 0}}
		if err := s.in.Reject(ctx, m, errors.New("no id attribute")); err != nil {
			t.Fatal(err)
		}
		dead, err := s.in.DeadLetters(ctx, 0, 10)
		if err != nil || len(dead) != 1 || dead[0].Message.ID != m.ID || dead[0].Error != "no id attribute" ||
			string(dead[0].Message.Payload) != string(m.Payload) || dead[0].Attempts != 0 {
			t.Fatalf("dead letters = %+v, %v", dead, err)
		}
		if o, err := s.in.Deliver(ctx, inbox.Delivery{Message: m, Redelivered: true}, s.effect); err != nil || o.Result != inbox.Duplicate {
			t.Fatalf("redelivery of a rejected message = %+v, %v", o, err)
		}
	})
	t.Run("DeliverBulk", func(t *testing.T) {
		s := setup(t, 10)
		ctx := context.Background()
		a1, a2, b1 := Msg("a", 1), Msg("a", 2), Msg("b", 1)
		s.want(b1, inbox.Applied)
		var calls [][]string
		bulk := func(ctx context.Context, tx outbox.Tx, ms []inbox.Message) error {
			var ids []string
			for _, m := range ms {
				if m.ID == "poison" {
					return errors.New("poison")
				}
				if err := s.effect(ctx, tx, m); err != nil {
					return err
				}
				ids = append(ids, m.Key+strconv.FormatInt(m.Position, 10))
			}
			calls = append(calls, ids)
			return nil
		}
		out, err := s.in.DeliverBulk(ctx, []inbox.Delivery{{Message: a1}, {Message: b1}, {Message: a2}, {Message: a1}}, bulk)
		if err != nil {
			t.Fatal(err)
		}
		if len(calls) != 1 || strings.Join(calls[0], ",") != "a1,a2" {
			t.Fatalf("bulk calls = %v, want one with a1,a2 in order", calls)
		}
		if out[0].Result != inbox.Applied || out[1].Result != inbox.Duplicate || out[2].Result != inbox.Applied || out[3].Result != inbox.Duplicate {
			t.Fatalf("outcomes = %+v", out)
		}
		// A failing bulk is redone one message at a time.
		calls = nil
		p, c1 := Msg("p", 1), Msg("c", 1)
		p.ID = "poison"
		out, err = s.in.DeliverBulk(ctx, []inbox.Delivery{{Message: c1}, {Message: p}}, bulk)
		if err != nil {
			t.Fatal(err)
		}
		if out[0].Result != inbox.Applied || !out[1].Retry || len(calls) != 1 || calls[0][0] != "c1" {
			t.Fatalf("outcomes = %+v, calls %v", out, calls)
		}
		for _, m := range []inbox.Message{a1, a2, b1, c1} {
			if n := s.effects(m.ID); n != 1 {
				t.Fatalf("effects of %s%d = %d, want 1", m.Key, m.Position, n)
			}
		}
	})
	t.Run("DeliverBatch", func(t *testing.T) {
		s := setup(t, 10)
		ctx := context.Background()
		a1, a2, b1, c1 := Msg("a", 1), Msg("a", 2), Msg("b", 1), Msg("c", 1)
		done := Msg("d", 1)
		s.want(done, inbox.Applied)
		ds := []inbox.Delivery{{Message: a1}, {Message: b1}, {Message: a1}, {Message: done, Redelivered: true}, {Message: c1}}
		out, err := s.in.DeliverBatch(ctx, ds, s.effect)
		if err != nil {
			t.Fatal(err)
		}
		want := []inbox.Result{inbox.Applied, inbox.Applied, inbox.Duplicate, inbox.Duplicate, inbox.Applied}
		for i, o := range out {
			if o.Result != want[i] || o.Retry {
				t.Fatalf("outcome %d = %+v, want %v", i, o, want[i])
			}
		}
		// A failing handler: the batch is rolled back and redone one by one; the failing
		// key's later message waits for it.
		bad := Msg("b", 2)
		fail := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
			if m.ID == bad.ID {
				return errors.New("bad")
			}
			return s.effect(ctx, tx, m)
		}
		b3, c2 := Msg("b", 3), Msg("c", 2)
		out, err = s.in.DeliverBatch(ctx, []inbox.Delivery{{Message: a2}, {Message: bad}, {Message: b3}, {Message: c2}}, fail)
		if err != nil {
			t.Fatal(err)
		}
		if out[0].Result != inbox.Applied || !out[1].Retry || out[1].Err.Error() != "bad" ||
			!out[2].Retry || !errors.Is(out[2].Err, inbox.ErrKeyBlocked) || out[2].Delay != out[1].Delay || out[3].Result != inbox.Applied {
			t.Fatalf("outcomes = %+v", out)
		}
		for _, m := range []inbox.Message{a1, a2, b1, c1, c2, done} {
			if n := s.effects(m.ID); n != 1 {
				t.Fatalf("effects of %s = %d, want 1", m.Key, n)
			}
		}
		for _, m := range []inbox.Message{bad, b3} {
			if n := s.effects(m.ID); n != 0 {
				t.Fatalf("effects of %s %d = %d, want 0", m.Key, m.Position, n)
			}
		}
		// Retried, they apply in order.
		out, err = s.in.DeliverBatch(ctx, []inbox.Delivery{{Message: bad, Redelivered: true}, {Message: b3, Redelivered: true}}, s.effect)
		if err != nil || out[0].Result != inbox.Applied || out[1].Result != inbox.Applied || out[0].Attempt != 2 || out[1].Attempt != 1 {
			t.Fatalf("retried = %+v, %v", out, err)
		}
		// A message held back behind its key's failing one is not counted: it is never
		// dead-lettered for its predecessor's failures.
		s2 := setup(t, 2)
		first, second := Msg("e", 1), Msg("e", 2)
		failFirst := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
			if m.ID == first.ID {
				return errors.New("first")
			}
			return s2.effect(ctx, tx, m)
		}
		for round := range 2 {
			out, err := s2.in.DeliverBatch(ctx, []inbox.Delivery{{Message: first, Redelivered: round > 0}, {Message: second, Redelivered: round > 0}}, failFirst)
			if err != nil || !out[0].Retry || !out[1].Retry || !errors.Is(out[1].Err, inbox.ErrKeyBlocked) || out[1].Attempt != 0 {
				t.Fatalf("round %d: %+v, %v", round, out, err)
			}
			if n := s2.count(s2.ph(`SELECT coalesce(sum(attempts), 0) FROM `+s2.env.Quote("_attempts")+` WHERE message_id = ?`), second.ID); n != 0 {
				t.Fatalf("round %d: the held-back message has %d counted attempts, want 0", round, n)
			}
		}
		out, err = s2.in.DeliverBatch(ctx, []inbox.Delivery{{Message: first, Redelivered: true}, {Message: second, Redelivered: true}}, failFirst)
		if err != nil || out[0].Result != inbox.DeadLettered || out[1].Result != inbox.Applied {
			t.Fatalf("third delivery, MaxAttempts 2 = %+v, %v; want the first dead, the second applied", out, err)
		}

	})
}

func dollarsOf(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
