package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/dialecttest"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

func enqueue(t *testing.T, s *postgres.Store, msgs ...outbox.Message) {
	t.Helper()
	if err := s.Enqueue(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
}

func keyed(key string, n int) outbox.Message {
	return outbox.Message{Topic: "t", Key: key, Payload: fmt.Appendf(nil, "%s%d", key, n)}
}

func seqsOf(recs []outbox.Record) []int64 {
	out := make([]int64, len(recs))
	for i := range recs {
		out[i] = recs[i].Seq
	}
	return out
}

func payloadsOf(recs []outbox.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Payload))
	}
	return out
}

// A key's rows are claimed up to its first row that is not ready, and the key is reported
// blocked until that row is due, also when the row is not the key's head.
func TestClaimStopsKeyAtRowNotReady(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	enqueue(t, s, keyed("a", 1), keyed("a", 2), keyed("a", 3), keyed("b", 1))
	due := time.Now().Add(time.Hour).Truncate(time.Microsecond)
	if _, err := s.Pool().Exec(ctx, `UPDATE `+postgres.TableOf(s)+` SET available_at = $1 WHERE payload = 'a2'`, due); err != nil {
		t.Fatal(err)
	}
	c, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := payloadsOf(c.Records()); !slices.Equal(got, []string{"a1", "b1"}) {
		t.Fatalf("claimed %v, want a1 b1 (a3 waits behind a2)", got)
	}
	if b := c.Blocked(); len(b) != 1 || b[0].Key != "a" || !b[0].Until.Equal(due) {
		t.Fatalf("Blocked() = %+v, want key a until %v", b, due)
	}
	if err := c.Finish(ctx, outbox.Outcome{Published: []int64{c.Records()[0].Seq, c.Records()[1].Seq}}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(ctx)
	if err != nil || st.Pending != 2 {
		t.Fatalf("Stats = %+v, %v; want a2 and a3 pending", st, err)
	}
}

// A claim that meets rows locked by another claim falls back to SKIP LOCKED and the order
// check, and keeps per-key order.
func TestClaimLockConflict(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	enqueue(t, s, keyed("a", 1), keyed("a", 2), keyed("b", 1), keyed("c", 1))
	first, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := payloadsOf(second.Records()); !slices.Equal(got, []string{"b1", "c1"}) {
		t.Fatalf("second claim = %v, want b1 c1", got)
	}
	if b := second.Blocked(); len(b) != 1 || b[0].Key != "a" {
		t.Fatalf("second claim Blocked() = %+v, want key a", b)
	}
	for _, c := range []dialect.Claim{second, first} {
		var seqs []int64
		for _, r := range c.Records() {
			seqs = append(seqs, r.Seq)
		}
		if err := c.Finish(ctx, outbox.Outcome{Published: seqs}); err != nil {
			t.Fatal(err)
		}
	}
	third, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := payloadsOf(third.Records()); !slices.Equal(got, []string{"a2"}) {
		t.Fatalf("third claim = %v, want a2", got)
	}
	if err := third.Finish(ctx, outbox.Outcome{}); err != nil {
		t.Fatal(err)
	}
}

// An outcome the database refuses leaves every row as it was, and the connection goes back
// to the pool outside any transaction.
func TestFinishFailureReleasesRows(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	enqueue(t, s, keyed("a", 1), keyed("b", 1))
	c, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	recs := c.Records()
	// A NUL byte cannot be stored in a text column: the retry update fails after the
	// delete of b1 was queued in the same round trip.
	err = c.Finish(ctx, outbox.Outcome{
		Published: []int64{recs[1].Seq},
		Retry:     []outbox.Retry{{Seq: recs[0].Seq, Delay: time.Hour, Error: "bad\x00error"}},
	})
	if err == nil {
		t.Fatal("Finish accepted an error text with a NUL byte")
	}
	for range 2 * int(s.Pool().Config().MaxConns) {
		c, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		got := c.Records()
		if len(got) != 2 || got[0].Attempts != 0 {
			t.Fatalf("after the failed finish: claimed %+v, want a1 and b1 unchanged", got)
		}
		if err := c.Finish(ctx, outbox.Outcome{}); err != nil {
			t.Fatal(err)
		}
	}
	var open int
	err = s.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state LIKE 'idle in transaction%'`,
		postgres.SchemaOf(s)).Scan(&open)
	if err != nil || open != 0 {
		t.Fatalf("sessions idle in transaction: %d, %v", open, err)
	}
}

// roundTrips counts what a pool sends: plain queries and batches (a batch is one round trip).
type roundTrips struct{ queries, batches atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.queries.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.batches.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// A published batch costs two round trips: BEGIN with the claim, the delete with COMMIT.
// An empty claim costs two as well: BEGIN with the claim, ROLLBACK.
func TestClaimRoundTrips(t *testing.T) {
	t.Parallel()
	_, schema := pgtest.Schema(t)
	cfg, err := pgxpool.ParseConfig(pgtest.URL())
	if err != nil {
		t.Fatal(err)
	}
	rt := &roundTrips{}
	cfg.ConnConfig.Tracer = rt
	cfg.MaxConns = 1 // one connection: statements are prepared once, in the warm-up
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s, err := postgres.New(context.Background(), postgres.Config{Pool: pool, Table: schema + ".outbox"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	cycle := func() (claimed int) {
		c, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 100, Partitions: 1, Slots: 2})
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, r := range c.Records() {
			seqs = append(seqs, r.Seq)
		}
		if err := c.Finish(ctx, outbox.Outcome{Published: seqs}); err != nil {
			t.Fatal(err)
		}
		return len(seqs)
	}
	fifty := func() {
		var msgs []outbox.Message
		for i := range 50 {
			msgs = append(msgs, keyed(fmt.Sprint("k", i), i))
		}
		enqueue(t, s, msgs...)
	}
	fifty()
	cycle() // warm-up: statement preparation
	cycle()
	fifty()
	rt.queries.Store(0)
	rt.batches.Store(0)
	n := cycle()
	if n == 0 {
		t.Fatal("claimed nothing")
	}
	if q, b := rt.queries.Load(), rt.batches.Load(); q != 0 || b != 2 {
		t.Errorf("a published batch took %d queries and %d batches, want 0 and 2", q, b)
	}
	rt.queries.Store(0)
	rt.batches.Store(0)
	for cycle() > 0 {
	}
	rt.queries.Store(0)
	rt.batches.Store(0)
	cycle()
	if q, b := rt.queries.Load(), rt.batches.Load(); q+b != 2 {
		t.Errorf("an empty claim took %d queries and %d batches, want 2 round trips", q, b)
	}
}

// A row committed by a transaction that began after the claim's transaction (but committed
// before the claim's snapshot) is ready: it must neither block its key nor be left out. With
// readiness judged by now() — the claim transaction's start — it was "due" in the future and
// its key waited for the next poll.
func TestClaimSeesRowOfLaterTransactionAsReady(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		query string
		args  []any
	}{
		{"nowait", postgres.ClaimNowaitSQL(s), []any{1, 0, []string{}, 1000, 1, 0}},
		{"skip locked", postgres.ClaimSkipLockedSQL(s), []any{1, 0, []string{}, 1000, 1, 0, []string{}, []string{}}},
	} {
		err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
			// The claim's transaction begins (now() is fixed from here)...
			if _, err := tx.Exec(ctx, `SELECT now()`); err != nil {
				return err
			}
			// ...then a producer's transaction begins and commits...
			time.Sleep(2 * time.Millisecond)
			enqueue(t, s, keyed("k-"+tc.name, 1))
			// ...before the claiming statement takes its snapshot.
			rows, err := tx.Query(ctx, tc.query, tc.args...)
			if err != nil {
				return err
			}
			defer rows.Close()
			n := 0
			for rows.Next() {
				vals, err := rows.Values()
				if err != nil {
					return err
				}
				if ready := vals[9].(bool); !ready {
					return fmt.Errorf("row %v claimed as not ready", vals[0])
				}
				n++
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if n != 1 {
				return fmt.Errorf("claimed %d rows, want the one committed", n)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s claim: %v", tc.name, err)
		}
		if _, err := s.Pool().Exec(ctx, `DELETE FROM `+postgres.TableOf(s)); err != nil {
			t.Fatal(err)
		}
	}
}

// The claim walks the id index and stops at its LIMIT; it must not read and sort the whole
// backlog, whatever the planner guesses about the key-space slice.
func TestClaimPlan(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	table := postgres.TableOf(s)
	if _, err := s.Pool().Exec(ctx, `INSERT INTO `+table+` (message_id, topic, key, payload)
		SELECT gen_random_uuid(), 't', 'k' || (i % 1000), '\x00' FROM generate_series(1, 20000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `ANALYZE `+table); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		query string
		args  []any
	}{
		{"nowait", postgres.ClaimNowaitSQL(s), []any{1, 0, []string{}, 1000, 2, 0}},
		{"skip locked", postgres.ClaimSkipLockedSQL(s), []any{1, 0, []string{}, 1000, 2, 0, []string{}, []string{}}},
	} {
		// A generic plan, as pgx's cached statements get after a few executions, and a custom one.
		for _, mode := range []string{"force_generic_plan", "force_custom_plan"} {
			err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = `+mode); err != nil {
					return err
				}
				var raw []byte
				if err := tx.QueryRow(ctx, `EXPLAIN (FORMAT JSON) `+tc.query, tc.args...).Scan(&raw); err != nil {
					return err
				}
				var plan []map[string]any
				if err := json.Unmarshal(raw, &plan); err != nil {
					return err
				}
				nodes := planNodes(plan[0]["Plan"].(map[string]any))
				if slices.Contains(nodes, "Sort") || !slices.Contains(nodes, "Index Scan") {
					return fmt.Errorf("plan nodes %v, want an index scan and no sort", nodes)
				}
				return nil
			})
			if err != nil {
				t.Errorf("%s claim, %s: %v", tc.name, mode, err)
			}
		}
	}
}

func planNodes(n map[string]any) []string {
	out := []string{n["Node Type"].(string)}
	if kids, ok := n["Plans"].([]any); ok {
		for _, k := range kids {
			out = append(out, planNodes(k.(map[string]any))...)
		}
	}
	return out
}

// An unreadable row is dead-lettered by the claim that holds it; the key's later rows go in
// the same claim (the dead letter commits with it), on both claiming paths.
func TestClaimUnreadableRowDoesNotHoldKey(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	table := postgres.TableOf(s)
	if _, err := s.Pool().Exec(ctx, `ALTER TABLE `+table+` DROP CONSTRAINT outbox_headers_object`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, `INSERT INTO `+table+` (message_id, topic, key, headers) VALUES (gen_random_uuid(), 't', 'a', '[1]')`); err != nil {
		t.Fatal(err)
	}
	enqueue(t, s, keyed("a", 2), keyed("b", 1))
	c, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if got := payloadsOf(c.Records()); !slices.Equal(got, []string{"a2", "b1"}) {
		t.Fatalf("claimed %v, want a2 b1", got)
	}
	if err := c.Finish(ctx, outbox.Outcome{Published: seqsOf(c.Records())}); err != nil {
		t.Fatal(err)
	}
	if dls, err := s.DeadLetters(ctx, 0, 10); err != nil || len(dls) != 1 || !strings.Contains(dls[0].LastError, "column headers") {
		t.Fatalf("dead letters = %+v, %v; want the unreadable row", dls, err)
	}
}

// One message per transaction takes the writer's single-row statement: every field, a
// missing key and an empty payload must come back as they went in.
func TestEnqueueOneMessage(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := context.Background()
	in := []outbox.Message{
		{Topic: "t", Key: "k", Type: "ty", Payload: []byte("p"), Headers: map[string]string{"h": "v", "content-type": "text/plain"}},
		{Topic: "u"},
	}
	for i := range in {
		enqueue(t, s, in[i:i+1]...) // a slice, so the assigned id is written back
	}
	c, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	got := c.Records()
	if len(got) != 2 {
		t.Fatalf("claimed %d, want 2", len(got))
	}
	a, b := got[0], got[1]
	if a.ID != in[0].ID || a.Topic != "t" || a.Key != "k" || a.Type != "ty" || string(a.Payload) != "p" ||
		a.Headers["h"] != "v" || a.Headers["content-type"] != "text/plain" || len(a.Headers) != 2 {
		t.Errorf("first = %+v", a)
	}
	if b.ID != in[1].ID || b.Topic != "u" || b.Key != "" || b.Type != "u" || len(b.Payload) != 0 || len(b.Headers) != 0 {
		t.Errorf("second = %+v", b)
	}
	var keyless int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM `+postgres.TableOf(s)+` WHERE key IS NULL`).Scan(&keyless); err != nil || keyless != 1 {
		t.Errorf("rows with a NULL key = %d, %v; want 1", keyless, err)
	}
	if err := c.Finish(ctx, outbox.Outcome{}); err != nil {
		t.Fatal(err)
	}
}

// batchSQL records the statements a pool sends in batches.
type batchSQL struct {
	roundTrips
	mu  sync.Mutex
	sql []string
}

func (b *batchSQL) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	b.mu.Lock()
	b.sql = append(b.sql, d.SQL)
	b.mu.Unlock()
}

// With AsyncCommit the store passes the conformance suite, and its claims (only they) run
// with synchronous_commit off.
func TestAsyncCommit(t *testing.T) {
	t.Parallel()
	newAsync := func(t *testing.T, tracer pgx.QueryTracer) *postgres.Store {
		_, schema := pgtest.Schema(t)
		cfg, err := pgxpool.ParseConfig(pgtest.URL())
		if err != nil {
			t.Fatal(err)
		}
		cfg.ConnConfig.Tracer = tracer
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		s, err := postgres.New(context.Background(), postgres.Config{Pool: pool, Table: schema + ".outbox", AsyncCommit: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.MigrateUp(context.Background()); err != nil {
			t.Fatal(err)
		}
		return s
	}
	t.Run("conformance", func(t *testing.T) {
		t.Parallel()
		dialecttest.Run(t, func(t *testing.T) dialect.Store { return newAsync(t, nil) })
	})
	t.Run("setting", func(t *testing.T) {
		t.Parallel()
		tr := &batchSQL{}
		s := newAsync(t, tr)
		ctx := context.Background()
		enqueue(t, s, keyed("a", 1))
		c, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Finish(ctx, outbox.Outcome{Published: []int64{c.Records()[0].Seq}}); err != nil {
			t.Fatal(err)
		}
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if !slices.Contains(tr.sql, "SET LOCAL synchronous_commit = off") {
			t.Errorf("claim batches sent %q, want SET LOCAL synchronous_commit = off among them", tr.sql)
		}
	})
}
