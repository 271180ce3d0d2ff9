package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/dialecttest"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/internal/testutil/mysqltest"
)

func ctxT(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newStore returns a migrated store on a fresh database, with its own pool (from the DSN).
func newStore(t testing.TB) *mysql.Store {
	t.Helper()
	_, dsn, _ := mysqltest.Database(t)
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
			stmt = strings.NewReplacer("{table}", "`outbox`", "{dead}", "`outbox_dead`").Replace(stmt)
			_, err := s.(*mysql.Store).DB().ExecContext(ctx, stmt)
			return err
		},
		InsertID: "INSERT INTO {table} (message_id, topic, `key`) VALUES ('{id}', 'orders.created', 'a')",
		Cases:    dialecttest.MySQLUnreadable,
	})
}

func msg(key string, n int) outbox.Message {
	return outbox.Message{Topic: "orders", Key: key, Payload: []byte(strconv.Itoa(n))}
}

func claim(t *testing.T, s *mysql.Store, req dialect.ClaimRequest) dialect.Claim {
	t.Helper()
	if req.Limit == 0 {
		req.Limit = 1000
	}
	c, err := s.Claim(ctxT(t), req)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return c
}

func finish(t *testing.T, c dialect.Claim, o outbox.Outcome) {
	t.Helper()
	if err := c.Finish(ctxT(t), o); err != nil {
		t.Fatalf("Finish: %v", err)
	}
}

func seqs(recs []outbox.Record) []int64 {
	out := make([]int64, len(recs))
	for i := range recs {
		out[i] = recs[i].Seq
	}
	return out
}

func keys(recs []outbox.Record) []string {
	out := make([]string, len(recs))
	for i := range recs {
		out[i] = recs[i].Key + ":" + string(recs[i].Payload)
	}
	return out
}

func exec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(ctxT(t), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   mysql.Config
		field string
	}{
		{"injection in table", mysql.Config{DSN: "root@tcp(127.0.0.1:3306)/test", Table: "x`; drop"}, "table"},
		{"three-part table", mysql.Config{DSN: "root@tcp(127.0.0.1:3306)/test", Table: "a.b.c"}, "table"},
		{"no database", mysql.Config{}, "database_url"},
		{"bad dsn", mysql.Config{DSN: "root@tcp(127.0.0.1:3306)test"}, "database_url"},
		{"dsn without database", mysql.Config{DSN: "root@tcp(127.0.0.1:3306)/"}, "database_url"},
		{"negative max conns", mysql.Config{DSN: "root@tcp(127.0.0.1:3306)/test", MaxConns: -1}, "max_conns"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := mysql.New(ctxT(t), tt.cfg)
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
	// A database-qualified table needs no database in the DSN.
	s, err := mysql.New(ctxT(t), mysql.Config{DSN: "root@tcp(127.0.0.1:3306)/", Table: "shop.outbox"})
	if err != nil {
		t.Fatalf("qualified table, DSN without database: %v", err)
	}
	_ = s.Close()
}

// A caller's pool is used as given (here with parseTime off, a non-UTC session time zone and
// loc=Local: times must not depend on them) and stays open after Close. The table lives in
// another database than the pool's.
func TestCallerDBAndQualifiedTable(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	_, dsn, _ := mysqltest.Database(t)
	_, _, other := mysqltest.Database(t)
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ParseTime = false
	cfg.Loc = time.FixedZone("elsewhere", -7*3600)
	cfg.Params = map[string]string{"time_zone": "'+05:00'"}
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	s, err := mysql.New(ctx, mysql.Config{DB: db, Table: other + ".events"})
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
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM `"+other+"`.`events`").Scan(&n); err != nil || n != 1 {
		t.Fatalf("rows in %s.events = %d, %v; want 1", other, n, err)
	}
	c := claim(t, s, dialect.ClaimRequest{})
	recs := c.Records()
	if len(recs) != 1 {
		t.Fatalf("claimed %d, want 1", len(recs))
	}
	if d := time.Since(recs[0].CreatedAt); d < -time.Minute || d > time.Minute {
		t.Errorf("created_at %v is not near now (%v off)", recs[0].CreatedAt, d)
	}
	// A retry of 1s is due in about 1s, whatever the session's time zone.
	finish(t, c, outbox.Outcome{Retry: []outbox.Retry{{Seq: recs[0].Seq, Delay: time.Second, Error: "x"}}})
	if c := claim(t, s, dialect.ClaimRequest{}); len(c.Records()) != 0 {
		t.Fatal("claimed a message during its backoff")
	} else {
		finish(t, c, outbox.Outcome{})
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := claim(t, s, dialect.ClaimRequest{})
		if len(c.Records()) == 1 {
			finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
			break
		}
		finish(t, c, outbox.Outcome{})
		if time.Now().After(deadline) {
			t.Fatal("retried message never became claimable")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(ctx); err != nil {
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
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM outbox").Scan(&inside); err != nil || inside != 2 {
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
	finish(t, c, outbox.Outcome{})
}

// The claim's transaction belongs to the claim, not to the context of the Claim call: a relay
// shutting down still finishes its in-flight batch.
func TestClaimOutlivesCallerContext(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	if err := s.Enqueue(ctxT(t), msg("a", 1)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if len(c.Records()) != 1 {
		t.Fatalf("claimed %d, want 1", len(c.Records()))
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	if st, err := s.Stats(ctxT(t)); err != nil || st.Pending != 0 {
		t.Fatalf("Stats = %+v, %v; want the message published", st, err)
	}
	// A context that has ended already refuses the claim.
	if _, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Claim with an ended context = %v, want context.Canceled", err)
	}
}

// An open claim takes no gap locks: producers commit at once, not after the batch is
// published. A later message of a held key waits; other keys flow.
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
	// Business transactions run at the server's default isolation (REPEATABLE READ).
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tx, err := s.DB().BeginTx(pctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Writer().Enqueue(pctx, tx, msg("a", 2), msg("b", 1)); err != nil {
		t.Fatalf("producer blocked by an open claim: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	c2 := claim(t, s, dialect.ClaimRequest{})
	if got := keys(c2.Records()); !slices.Equal(got, []string{"b:1"}) {
		t.Fatalf("second claim = %v, want only b:1", got)
	}
	if b := c2.Blocked(); len(b) != 1 || b[0].Key != "a" {
		t.Errorf("Blocked() = %v, want [a]", b)
	}
	finish(t, c2, outbox.Outcome{Published: seqs(c2.Records())})
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	c3 := claim(t, s, dialect.ClaimRequest{})
	if got := keys(c3.Records()); !slices.Equal(got, []string{"a:2"}) {
		t.Fatalf("third claim = %v, want a:2", got)
	}
	finish(t, c3, outbox.Outcome{Published: seqs(c3.Records())})
}

// A claim's scan passes over rows it does not take (other partitions, rows in backoff) and
// must not keep them locked: the other relays' claims would skip them until it ends.
func TestClaimsDoNotLockRowsTheyDoNotTake(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := ctxT(t)
	var msgs []outbox.Message
	for i := range 200 {
		msgs = append(msgs, msg(fmt.Sprint("k", i%50), i))
	}
	if err := s.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	// Partition 0's claim scans the whole table; partition 1's still gets all of its rows.
	p0 := claim(t, s, dialect.ClaimRequest{Partition: 0, Partitions: 2})
	p1 := claim(t, s, dialect.ClaimRequest{Partition: 1, Partitions: 2})
	if n0, n1 := len(p0.Records()), len(p1.Records()); n0+n1 != 200 || n0 == 0 || n1 == 0 {
		t.Fatalf("partitions claimed %d + %d of 200 messages while both open", n0, n1)
	}
	if len(p0.Blocked())+len(p1.Blocked()) != 0 {
		t.Fatalf("blocked keys %v %v, want none", p0.Blocked(), p1.Blocked())
	}
	finish(t, p0, outbox.Outcome{})
	finish(t, p1, outbox.Outcome{})

	// A row in backoff that a claim scanned past is free as soon as it is due.
	c := claim(t, s, dialect.ClaimRequest{Limit: 1})
	head := c.Records()[0]
	finish(t, c, outbox.Outcome{Retry: []outbox.Retry{{Seq: head.Seq, Delay: time.Hour, Error: "later"}}})
	open := claim(t, s, dialect.ClaimRequest{Limit: 1000})
	if slices.Contains(seqs(open.Records()), head.Seq) {
		t.Fatal("claimed a row in backoff")
	}
	exec(t, s.DB(), "UPDATE outbox SET available_at = UTC_TIMESTAMP(6) WHERE id = ?", head.Seq)
	c = claim(t, s, dialect.ClaimRequest{Limit: 1000})
	if got := seqs(c.Records()); !slices.Equal(got, []int64{head.Seq}) {
		t.Fatalf("claim after the backoff ended = %v, want only %d (the rest is held)", got, head.Seq)
	}
	finish(t, c, outbox.Outcome{})
	finish(t, open, outbox.Outcome{})
}

// Keys and topics compare byte for byte: case and trailing spaces make different keys, which
// neither block nor share each other's order.
func TestKeysAndTopicsCompareExactly(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := ctxT(t)
	if err := s.Enqueue(ctx, msg("a ", 1), msg("a", 1), msg("A", 1), msg("a ", 2)); err != nil {
		t.Fatal(err)
	}
	first := claim(t, s, dialect.ClaimRequest{Limit: 1}) // holds "a " 1
	if got := keys(first.Records()); !slices.Equal(got, []string{"a :1"}) {
		t.Fatalf("first claim = %q", got)
	}
	second := claim(t, s, dialect.ClaimRequest{})
	if got := keys(second.Records()); !slices.Equal(got, []string{"a:1", "A:1"}) {
		t.Fatalf("second claim = %q, want a:1 and A:1 (only \"a \" waits)", got)
	}
	if b := second.Blocked(); len(b) != 1 || b[0].Key != "a " {
		t.Errorf("Blocked() = %q, want [\"a \"]", b)
	}
	finish(t, second, outbox.Outcome{Published: seqs(second.Records())})
	finish(t, first, outbox.Outcome{Published: seqs(first.Records())})

	t1, t2 := msg("x", 1), msg("y", 1)
	t1.Topic, t2.Topic = "orders", "orders "
	if err := s.Enqueue(ctx, t1, t2); err != nil {
		t.Fatal(err)
	}
	c := claim(t, s, dialect.ClaimRequest{Topics: []string{"orders"}})
	if got := keys(c.Records()); !slices.Equal(got, []string{"a :2", "x:1"}) {
		t.Fatalf("topic filter orders claimed %q, want a :2 and x:1", got)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	c = claim(t, s, dialect.ClaimRequest{})
	if got := keys(c.Records()); !slices.Equal(got, []string{"y:1"}) {
		t.Fatalf("rest = %q, want y:1", got)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
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
	finish(t, second, outbox.Outcome{Published: seqs(second.Records())})
	// The refused Finish changed nothing and released its message.
	c := claim(t, s, dialect.ClaimRequest{})
	if got := c.Records(); len(got) != 1 || got[0].Key != "a" || got[0].Attempts != 0 {
		t.Fatalf("after refused Finish: %+v, want a1 unchanged", got)
	}
	finish(t, c, outbox.Outcome{})
}

// Retention mode: published rows stay (marked) and claims still find the new ones.
func TestRetainKeepsClaimingNewRows(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := ctxT(t)
	if err := s.Enqueue(ctx, msg("a", 1), msg("b", 1)); err != nil {
		t.Fatal(err)
	}
	c := claim(t, s, dialect.ClaimRequest{Retain: true})
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	if c := claim(t, s, dialect.ClaimRequest{Retain: true}); len(c.Records()) != 0 {
		t.Fatalf("published rows claimed again: %q", keys(c.Records()))
	} else {
		finish(t, c, outbox.Outcome{})
	}
	if err := s.Enqueue(ctx, msg("a", 2)); err != nil {
		t.Fatal(err)
	}
	c = claim(t, s, dialect.ClaimRequest{Retain: true})
	if got := keys(c.Records()); !slices.Equal(got, []string{"a:2"}) {
		t.Fatalf("claim after retained rows = %q, want a:2", got)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	var marked int
	if err := s.DB().QueryRowContext(ctx, "SELECT COUNT(*) FROM outbox WHERE published_at IS NOT NULL").Scan(&marked); err != nil || marked != 3 {
		t.Fatalf("marked rows = %d, %v; want 3", marked, err)
	}
	if n, err := s.DeletePublished(ctx, 0, 2); err != nil || n != 2 {
		t.Fatalf("DeletePublished(0, 2) = %d, %v; want 2", n, err)
	}
	if n, err := s.DeletePublished(ctx, 0, 100); err != nil || n != 1 {
		t.Fatalf("DeletePublished(0, 100) = %d, %v; want 1", n, err)
	}
}

// Writers in other languages insert plain rows; the defaults and checks keep them claimable,
// and a row the relay cannot read is dead-lettered instead of blocking the claims.
func TestPlainInsertFromOtherWriters(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := ctxT(t)
	id := outbox.NewID()
	exec(t, s.DB(), "INSERT INTO outbox (message_id, topic, `key`, payload, headers) VALUES (?, 'orders', 'k', ?, '{\"a\":\"b\",\"n\":1}')",
		id.String(), []byte("x"))
	for _, bad := range []string{
		"INSERT INTO outbox (message_id, topic, headers) VALUES ('m1', 'orders', '[]')",
		"INSERT INTO outbox (message_id, topic, headers) VALUES ('m2', 'orders', 'not json')",
		"INSERT INTO outbox (message_id, topic, headers) VALUES ('m2', 'orders', NULL)",
		"INSERT INTO outbox (message_id) VALUES ('m3')",
	} {
		if _, err := s.DB().ExecContext(ctx, bad); err == nil {
			t.Errorf("%s: want a constraint error", bad)
		}
	}
	exec(t, s.DB(), "INSERT INTO outbox (message_id, topic, `key`) VALUES ('not-a-uuid', 'orders', 'k')")
	c := claim(t, s, dialect.ClaimRequest{})
	recs := c.Records()
	if len(recs) != 1 {
		t.Fatalf("claimed %d, want 1", len(recs))
	}
	r := recs[0]
	if r.ID != id || r.Key != "k" || r.Type != "" || string(r.Payload) != "x" || r.Headers["a"] != "b" || r.Headers["n"] != "1" {
		t.Errorf("record = %+v", r)
	}
	if d := time.Since(r.CreatedAt); d < -time.Minute || d > time.Minute {
		t.Errorf("created_at %v not near now", r.CreatedAt)
	}
	finish(t, c, outbox.Outcome{Published: seqs(recs)})
	dls, err := s.DeadLetters(ctx, 0, 10)
	if err != nil || len(dls) != 1 || !strings.Contains(dls[0].LastError, "not-a-uuid") {
		t.Fatalf("dead letters = %+v, %v; want the unreadable row with its reason", dls, err)
	}
}

// Outcomes larger than one statement's chunk, with error text that is not valid UTF-8 or is
// too long for a TEXT column.
func TestLargeOutcomes(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := ctxT(t)
	const n = 2600
	msgs := make([]outbox.Message, n)
	for i := range msgs {
		msgs[i] = msg("", i)
	}
	if err := s.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	c := claim(t, s, dialect.ClaimRequest{Limit: n})
	recs := c.Records()
	if len(recs) != n {
		t.Fatalf("claimed %d, want %d", len(recs), n)
	}
	long := strings.Repeat("é", 40000)
	var o outbox.Outcome
	for i, r := range recs {
		switch i % 3 {
		case 0:
			o.Published = append(o.Published, r.Seq)
		case 1:
			// At least a minute: none may become ready while a slow machine runs the test.
			o.Retry = append(o.Retry, outbox.Retry{Seq: r.Seq, Delay: time.Minute + time.Duration(i)*time.Second, Error: "bad \xff byte " + strconv.Itoa(i)})
		default:
			o.Dead = append(o.Dead, outbox.Dead{Seq: r.Seq, Error: long})
		}
	}
	finish(t, c, o)
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != int64(len(o.Retry)) || st.Retrying != int64(len(o.Retry)) || st.DeadLetters != int64(len(o.Dead)) || st.Ready > 1 {
		t.Fatalf("Stats = %+v, want %d retrying and %d dead", st, len(o.Retry), len(o.Dead))
	}
	var (
		lastErr string
		delayUS int64
	)
	r := o.Retry[len(o.Retry)-1]
	if err := s.DB().QueryRowContext(ctx, "SELECT last_error, TIMESTAMPDIFF(MICROSECOND, UTC_TIMESTAMP(6), available_at) FROM outbox WHERE id = ?", r.Seq).
		Scan(&lastErr, &delayUS); err != nil {
		t.Fatal(err)
	}
	if want := "bad \uFFFD byte " + strconv.Itoa(int((r.Delay-time.Minute)/time.Second)); lastErr != want {
		t.Errorf("last_error = %q, want %q", lastErr, want)
	}
	if d := time.Duration(delayUS) * time.Microsecond; d > r.Delay || d < r.Delay-time.Minute {
		t.Errorf("retry due in %v, want about %v", d, r.Delay)
	}
	dls, err := s.DeadLetters(ctx, 0, 3)
	if err != nil || len(dls) != 3 {
		t.Fatalf("DeadLetters = %d, %v", len(dls), err)
	}
	if e := dls[0].LastError; len(e) > 65535 || !strings.HasPrefix(e, "éé") {
		t.Errorf("long error stored as %d bytes", len(e))
	}
	if !slices.IsSortedFunc(dls, func(a, b dialect.DeadLetter) int { return int(a.Record.Seq - b.Record.Seq) }) {
		t.Error("dead letters not in message order")
	}
	if n, err := s.RetryDeadLetters(ctx, nil); err != nil || n != int64(len(o.Dead)) {
		t.Fatalf("RetryDeadLetters(all) = %d, %v", n, err)
	}
	if n, err := s.PurgeDeadLetters(ctx, []int64{}); err != nil || n != 0 {
		t.Fatalf("PurgeDeadLetters(none) = %d, %v", n, err)
	}
	if st, _ := s.Stats(ctx); st.Pending != int64(len(o.Retry)+len(o.Dead)) || st.DeadLetters != 0 {
		t.Fatalf("Stats after retrying dead letters = %+v", st)
	}
}

// Two processes migrating at once: one applies, the other waits for the lock and finds
// nothing to do. A migration cut short (applied but not recorded) applies again cleanly.
func TestMigrateConcurrentlyAndAgain(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	_, dsn, _ := mysqltest.Database(t)
	var (
		wg      sync.WaitGroup
		applied [4][]int
		errs    [4]error
	)
	for i := range applied {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := mysql.New(ctx, mysql.Config{DSN: dsn})
			if err != nil {
				errs[i] = err
				return
			}
			defer s.Close()
			applied[i], errs[i] = s.MigrateUp(ctx)
		}()
	}
	wg.Wait()
	total := 0
	for i := range applied {
		if errs[i] != nil {
			t.Fatalf("MigrateUp %d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	s, err := mysql.New(ctx, mysql.Config{DSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.MigrationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if total != len(st) {
		t.Fatalf("concurrent MigrateUp applied %d migrations in all, want %d (each once)", total, len(st))
	}
	if err := s.Enqueue(ctx, msg("k", 1)); err != nil {
		t.Fatal(err)
	}
	// As after a crash between a migration's DDL and its record.
	exec(t, s.DB(), "DELETE FROM outbox_migrations")
	again, err := s.MigrateUp(ctx)
	if err != nil || len(again) != len(st) {
		t.Fatalf("MigrateUp over an unrecorded migration = %v, %v", again, err)
	}
	if st, err := s.Stats(ctx); err != nil || st.Pending != 1 {
		t.Fatalf("Stats after re-running migrations = %+v, %v; want the message kept", st, err)
	}
}

func TestDSNFromURL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ url, want string }{
		{"mysql://root@127.0.0.1:3306/test", "root@tcp(127.0.0.1:3306)/test"},
		{"mysql://u:p%40ss%2Fw@db.example:3307/shop?tls=true&timeout=5s", "u:p@ss/w@tcp(db.example:3307)/shop?timeout=5s&tls=true"},
		{"mariadb://u@localhost/app", "u@tcp(localhost:3306)/app"},
		{"mysql://u@[::1]/app", "u@tcp([::1]:3306)/app"},
		{"mysql:///app?socket=/run/mysqld/mysqld.sock", "unix(/run/mysqld/mysqld.sock)/app"},
	} {
		got, err := mysql.DSNFromURL(tt.url)
		if err != nil || got != tt.want {
			t.Errorf("DSNFromURL(%q) = %q, %v; want %q", tt.url, got, err, tt.want)
		}
		if _, err := gomysql.ParseDSN(got); err != nil {
			t.Errorf("DSNFromURL(%q) = %q does not parse: %v", tt.url, got, err)
		}
	}
	for _, bad := range []string{
		"postgres://u:secret@h/db",
		"mysql://u:secret@h:notaport/db",
		"mysql://u:secret@h/db/extra",
		"mysql://u:secret@h/db?timeout=forever",
	} {
		_, err := mysql.DSNFromURL(bad)
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != "database_url" {
			t.Errorf("DSNFromURL(%q) = %v, want a ConfigError for database_url", bad, err)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("DSNFromURL(%q) error shows the password: %v", bad, err)
		}
	}
}

// TestMigrationStatusCreatesNothing: reading the migration status creates no table, and no
// database for a table qualified with one that does not exist.
func TestMigrationStatusCreatesNothing(t *testing.T) {
	t.Parallel()
	db, _, name := mysqltest.Database(t)
	for _, table := range []string{"outbox", name + "_none.outbox"} {
		s, err := mysql.New(ctxT(t), mysql.Config{DB: db, Table: table})
		if err != nil {
			t.Fatal(err)
		}
		st, err := s.MigrationStatus(ctxT(t))
		if err != nil || len(st) == 0 || st[0].Applied {
			t.Fatalf("%s: MigrationStatus = %+v, %v; want every migration unapplied", table, st, err)
		}
	}
	var n int
	if err := db.QueryRowContext(ctxT(t), `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ?`, name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d tables after MigrationStatus (%v), want none", n, err)
	}
	if err := db.QueryRowContext(ctxT(t), `SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?`, name+"_none").Scan(&n); err != nil || n != 0 {
		t.Fatalf("database created by MigrationStatus (%d, %v)", n, err)
	}
}
