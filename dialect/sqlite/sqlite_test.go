package sqlite_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/dialecttest"
	"github.com/outboxgo/outbox/dialect/sqlite"
)

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newStore returns a migrated store on a fresh database file.
func newStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.New(ctxT(t), sqlite.Config{Path: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.MigrateUp(ctxT(t)); err != nil {
		t.Fatalf("MigrateUp: %v", err)
	}
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	dialecttest.Run(t, func(t *testing.T) dialect.Store { return newStore(t) })
}

// TestUnreadableRows: rows written by plain SQL that no relay can decode go to the dead
// letters, naming the column, and the rest of their key flows on.
func TestUnreadableRows(t *testing.T) {
	t.Parallel()
	dialecttest.RunUnreadable(t, func(t *testing.T) dialect.Store { return newStore(t) }, dialecttest.Raw{
		Exec: func(ctx context.Context, s dialect.Store, stmt string) error {
			stmt = strings.NewReplacer("{table}", `"outbox"`, "{dead}", `"outbox_dead"`).Replace(stmt)
			_, err := s.(*sqlite.Store).DB().ExecContext(ctx, stmt)
			return err
		},
		InsertID: `INSERT INTO {table} (message_id, topic, key) VALUES ('{id}', 'orders.created', 'a')`,
		Cases:    dialecttest.SQLiteUnreadable,
	})
}

func msg(key string, n int) outbox.Message {
	return outbox.Message{Topic: "orders", Key: key, Payload: []byte(strconv.Itoa(n))}
}

func claim(t *testing.T, s *sqlite.Store, req dialect.ClaimRequest) dialect.Claim {
	t.Helper()
	if req.Limit == 0 {
		req.Limit = 100
	}
	c, err := s.Claim(ctxT(t), req)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return c
}

func seqs(recs []outbox.Record) []int64 {
	out := make([]int64, len(recs))
	for i := range recs {
		out[i] = recs[i].Seq
	}
	return out
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name  string
		cfg   sqlite.Config
		field string
	}{
		{"schema-qualified table", sqlite.Config{Path: filepath.Join(dir, "a.db"), Table: "app.outbox"}, "table"},
		{"injection in table", sqlite.Config{Path: filepath.Join(dir, "b.db"), Table: "x; drop"}, "table"},
		{"quote in table", sqlite.Config{Path: filepath.Join(dir, "c.db"), Table: `x"y`}, "table"},
		{"reserved table", sqlite.Config{Path: filepath.Join(dir, "d.db"), Table: "sqlite_outbox"}, "table"},
		{"no database", sqlite.Config{}, "path"},
		{"in-memory database", sqlite.Config{Path: ":memory:"}, "path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := sqlite.New(ctxT(t), tt.cfg)
			var ce *outbox.ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field {
				if s != nil {
					_ = s.Close()
				}
				t.Fatalf("New(%+v) = %v, want a ConfigError for field %q", tt.cfg, err, tt.field)
			}
			if !errors.Is(err, outbox.ErrInvalidConfig) {
				t.Errorf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
	// A refused configuration creates no file.
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("refused configurations created files: %v", entries)
	}
}

func TestCustomTableAndCallerDB(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	owner, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "app.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	s, err := sqlite.New(ctx, sqlite.Config{DB: owner.DB(), Table: "events"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(ctx, msg("k", 1)); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := owner.DB().QueryRowContext(ctx, `SELECT count(*) FROM "events"`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows in events = %d, %v; want 1", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The caller's DB stays open.
	if err := owner.DB().PingContext(ctx); err != nil {
		t.Fatalf("Close closed the caller's DB: %v", err)
	}
}

func TestEnqueueRolledBackLeavesNothing(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := ctxT(t)
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Writer().Enqueue(ctx, tx, msg("a", 1), msg("", 2)); err != nil {
		t.Fatal(err)
	}
	var inside int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM outbox`).Scan(&inside); err != nil || inside != 2 {
		t.Fatalf("rows inside the transaction = %d, %v; want 2", inside, err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(ctx)
	if err != nil || st.Pending != 0 {
		t.Fatalf("Stats after rollback = %+v, %v; want nothing pending", st, err)
	}
	c := claim(t, s, dialect.ClaimRequest{})
	if n := len(c.Records()); n != 0 {
		t.Fatalf("claimed %d rolled-back messages", n)
	}
	if err := c.Finish(ctx, outbox.Outcome{}); err != nil {
		t.Fatal(err)
	}
}

// An open claim holds no lock: producers commit at once, not after the batch is published.
func TestOpenClaimDoesNotBlockProducers(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := ctxT(t)
	if err := s.Enqueue(ctx, msg("a", 1)); err != nil {
		t.Fatal(err)
	}
	c := claim(t, s, dialect.ClaimRequest{})
	if len(c.Records()) != 1 {
		t.Fatalf("claimed %d, want 1", len(c.Records()))
	}
	start := time.Now()
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Writer().Enqueue(ctx, tx, msg("a", 2), msg("b", 1)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > sqlite.BusyTimeout/2 {
		t.Fatalf("producer took %v while a claim was open", d)
	}
	// a2 waits behind a1, which the open claim holds; b1 is free.
	c2 := claim(t, s, dialect.ClaimRequest{})
	if got := c2.Records(); len(got) != 1 || got[0].Key != "b" {
		t.Fatalf("second claim = %+v, want only b1", got)
	}
	if !slices.Equal(c2.Blocked(), []dialect.BlockedKey{{Key: "a"}}) {
		t.Errorf("Blocked() = %v, want [a]", c2.Blocked())
	}
	if err := c2.Finish(ctx, outbox.Outcome{Published: seqs(c2.Records())}); err != nil {
		t.Fatal(err)
	}
	if err := c.Finish(ctx, outbox.Outcome{Published: seqs(c.Records())}); err != nil {
		t.Fatal(err)
	}
	c3 := claim(t, s, dialect.ClaimRequest{})
	if got := c3.Records(); len(got) != 1 || got[0].Key != "a" || string(got[0].Payload) != "2" {
		t.Fatalf("third claim = %+v, want a2", got)
	}
	if err := c3.Finish(ctx, outbox.Outcome{Published: seqs(c3.Records())}); err != nil {
		t.Fatal(err)
	}
}

// SQLite has one writer: a producer committing while another write transaction holds the lock
// waits for it (busy timeout) and then succeeds; so does a Finish.
func TestWritersWaitForTheWriteLock(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := ctxT(t)
	if err := s.Enqueue(ctx, msg("a", 1)); err != nil {
		t.Fatal(err)
	}
	c := claim(t, s, dialect.ClaimRequest{})

	// A business transaction that takes its time: it holds the write lock from BEGIN.
	holder, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Writer().Enqueue(ctx, holder, msg("b", 1)); err != nil {
		t.Fatal(err)
	}

	produced := make(chan error, 1)
	go func() { produced <- s.Enqueue(ctx, msg("c", 1)) }()
	finished := make(chan error, 1)
	go func() { finished <- c.Finish(ctx, outbox.Outcome{Published: seqs(c.Records())}) }()

	select {
	case err := <-produced:
		t.Fatalf("producer committed while another transaction held the write lock: %v", err)
	case err := <-finished:
		t.Fatalf("Finish committed while another transaction held the write lock: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := holder.Commit(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		select {
		case err := <-produced:
			if err != nil {
				t.Fatalf("waiting producer: %v", err)
			}
		case err := <-finished:
			if err != nil {
				t.Fatalf("waiting Finish: %v", err)
			}
		case <-ctx.Done():
			t.Fatal("writers never got the lock")
		}
	}
	c2 := claim(t, s, dialect.ClaimRequest{})
	var keys []string
	for _, r := range c2.Records() {
		keys = append(keys, r.Key)
	}
	if !slices.Equal(keys, []string{"b", "c"}) {
		t.Fatalf("claimed keys %v, want [b c] (a was published)", keys)
	}
	if err := c2.Finish(ctx, outbox.Outcome{Published: seqs(c2.Records())}); err != nil {
		t.Fatal(err)
	}
}

func TestBackoffBlocksKey(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := ctxT(t)
	if err := s.Enqueue(ctx, msg("a", 1), msg("a", 2), msg("", 3)); err != nil {
		t.Fatal(err)
	}
	c := claim(t, s, dialect.ClaimRequest{Limit: 1})
	if err := c.Finish(ctx, outbox.Outcome{Retry: []outbox.Retry{{Seq: c.Records()[0].Seq, Delay: time.Hour, Error: "down"}}}); err != nil {
		t.Fatal(err)
	}
	c = claim(t, s, dialect.ClaimRequest{})
	if got := c.Records(); len(got) != 1 || got[0].Key != "" {
		t.Fatalf("claimed %+v, want only the keyless message", got)
	}
	if !slices.Equal(c.Blocked(), []dialect.BlockedKey{{Key: "a"}}) {
		t.Errorf("Blocked() = %v, want [a]", c.Blocked())
	}
	if err := c.Finish(ctx, outbox.Outcome{}); err != nil {
		t.Fatal(err)
	}
	// SkipKeys keeps the blocked key out of the scan altogether.
	c = claim(t, s, dialect.ClaimRequest{SkipKeys: []string{"a"}})
	if len(c.Records()) != 1 || len(c.Blocked()) != 0 {
		t.Fatalf("with SkipKeys: records %+v, blocked %v", c.Records(), c.Blocked())
	}
	if err := c.Finish(ctx, outbox.Outcome{}); err != nil {
		t.Fatal(err)
	}
}

func TestFinishRefusesForeignMessages(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := ctxT(t)
	if err := s.Enqueue(ctx, msg("a", 1), msg("b", 1)); err != nil {
		t.Fatal(err)
	}
	first := claim(t, s, dialect.ClaimRequest{Limit: 1})
	second := claim(t, s, dialect.ClaimRequest{Limit: 1})
	if len(first.Records()) != 1 || len(second.Records()) != 1 {
		t.Fatalf("claims = %v, %v", first.Records(), second.Records())
	}
	err := first.Finish(ctx, outbox.Outcome{Published: []int64{first.Records()[0].Seq, second.Records()[0].Seq}})
	if err == nil {
		t.Fatal("Finish with another claim's message: want error")
	}
	if err := second.Finish(ctx, outbox.Outcome{Published: seqs(second.Records())}); err != nil {
		t.Fatal(err)
	}
	// The failed Finish changed nothing and released its message.
	c := claim(t, s, dialect.ClaimRequest{})
	if got := c.Records(); len(got) != 1 || got[0].Key != "a" || got[0].Attempts != 0 {
		t.Fatalf("after refused Finish: %+v, want a1 unchanged", got)
	}
	if err := c.Finish(ctx, outbox.Outcome{}); err != nil {
		t.Fatal(err)
	}
}

func TestPartitionsIncludeKeylessMessages(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := ctxT(t)
	var msgs []outbox.Message
	for i := range 50 {
		msgs = append(msgs, msg("", i))
	}
	if err := s.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	total := 0
	for p := range 4 {
		c := claim(t, s, dialect.ClaimRequest{Partition: p, Partitions: 4})
		total += len(c.Records())
		if err := c.Finish(ctx, outbox.Outcome{}); err != nil {
			t.Fatal(err)
		}
	}
	if total != 50 {
		t.Fatalf("partitions covered %d keyless messages, want 50", total)
	}
}

// Writers in other languages insert plain rows; the defaults and checks keep them claimable.
func TestPlainInsertFromOtherWriters(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := ctxT(t)
	id := outbox.NewID()
	if _, err := s.DB().ExecContext(ctx, `INSERT INTO outbox (message_id, topic, key, payload, headers) VALUES (?, 'orders', 'k', ?, '{"a":"b","n":1}')`,
		id.String(), []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		`INSERT INTO outbox (message_id, topic, headers) VALUES ('m1', 'orders', '[]')`,
		`INSERT INTO outbox (message_id, topic, headers) VALUES ('m2', 'orders', 'not json')`,
		`INSERT INTO outbox (message_id, topic, created_at) VALUES ('m3', 'orders', '2024-01-01T00:00:00Z')`,
		`INSERT INTO outbox (message_id, topic, available_at) VALUES ('m4', 'orders', '2024-01-01T00:00:00Z')`,
	} {
		if _, err := s.DB().ExecContext(ctx, bad); err == nil {
			t.Errorf("%s: want a constraint error", bad)
		}
	}
	c := claim(t, s, dialect.ClaimRequest{})
	recs := c.Records()
	if len(recs) != 1 {
		t.Fatalf("claimed %d, want 1", len(recs))
	}
	r := recs[0]
	if r.ID != id || r.Key != "k" || r.Type != "" || r.Headers["a"] != "b" || r.Headers["n"] != "1" {
		t.Errorf("record = %+v", r)
	}
	if d := time.Since(r.CreatedAt); d < -time.Minute || d > time.Minute {
		t.Errorf("created_at %v not near now", r.CreatedAt)
	}
	if err := c.Finish(ctx, outbox.Outcome{Published: seqs(recs)}); err != nil {
		t.Fatal(err)
	}
}

// TestPlainInsertWithSQLiteShell: the README's plain INSERT, run by the sqlite3 shell (the
// SQLite a service in another language links, older than the store's: Debian 12 has 3.40,
// where unixepoch('subsec') was NULL), gets its times from the defaults, and its message_id
// in canonical form. Skipped without a sqlite3 on PATH.
func TestPlainInsertWithSQLiteShell(t *testing.T) {
	t.Parallel()
	shell, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Skip("no sqlite3 shell on PATH")
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	s, err := sqlite.New(ctxT(t), sqlite.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.MigrateUp(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(shell, path, `INSERT INTO outbox (message_id, topic, key, type, payload, headers)
VALUES ('0190F2A4-5B6C-7D8E-9F00-112233445566', 'orders.created', 'o-1', 'order.created',
        CAST('{"id":"o-1"}' AS BLOB), '{"content-type": "application/json"}');`).CombinedOutput()
	if err != nil {
		t.Fatalf("sqlite3 shell: %v: %s", err, out)
	}
	var (
		id               string
		created, availAt int64
	)
	if err := s.DB().QueryRowContext(ctxT(t), `SELECT message_id, created_at, available_at FROM outbox`).Scan(&id, &created, &availAt); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMicro()
	if id != "0190f2a4-5b6c-7d8e-9f00-112233445566" || now-created > 60e6 || created-now > 60e6 || availAt != created {
		t.Fatalf("row: message_id %s, created_at %d, available_at %d (now %d)", id, created, availAt, now)
	}
}

// TestMigrationStatusCreatesNothing: reading the migration status of an empty database
// creates no table.
func TestMigrationStatusCreatesNothing(t *testing.T) {
	t.Parallel()
	s, err := sqlite.New(ctxT(t), sqlite.Config{Path: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.MigrationStatus(ctxT(t))
	if err != nil || len(st) == 0 || st[0].Applied {
		t.Fatalf("MigrationStatus = %+v, %v; want every migration unapplied", st, err)
	}
	var n int
	if err := s.DB().QueryRowContext(ctxT(t), `SELECT count(*) FROM sqlite_master`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d schema objects after MigrationStatus (%v), want none", n, err)
	}
}
