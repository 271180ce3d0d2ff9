package binlog_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/dialecttest"
	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/mysqltest"
	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/binlog"
	"github.com/outboxgo/outbox/sink"
)

// TestDeliversInKeyOrder: messages committed through the mysql store's Writer, before and
// while the relay runs, in transactions of several messages, are delivered once each in
// per-key order; rolled-back ones never; rows of other tables, and updates and deletes of the
// outbox table, are no messages; acknowledged rows are deleted.
func TestDeliversInKeyOrder(t *testing.T) {
	t.Parallel()
	e := setup(t)
	src := e.source(t, e.config(t))
	if err := src.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	n := len(e.produce(t, 20, 0, 10, 10))
	// A rolled-back transaction, with other tables' writes and updates of the outbox table.
	if _, err := e.db.Exec(`CREATE TABLE orders (id INT PRIMARY KEY, note TEXT)`); err != nil {
		t.Fatal(err)
	}
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`INSERT INTO orders VALUES (1, 'rolled back')`); err != nil {
		t.Fatal(err)
	}
	if err := e.writer.Enqueue(ctx, tx, outbox.Message{Topic: "test.rolledback", Key: "k0", Payload: []byte("rolledback")}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(`INSERT INTO orders VALUES (2, 'other table')`); err != nil {
		t.Fatal(err)
	}

	// Updates and deletes of the outbox table (by hand here; the source's own deletes too)
	// publish nothing.
	if _, err := e.db.Exec(`UPDATE outbox SET last_error = 'touched' ORDER BY id LIMIT 5`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(`UPDATE orders SET note = 'x'`); err != nil {
		t.Fatal(err)
	}

	sk := sourcetest.NewSink()
	sourcetest.StartRelay(t, src, sk, relay.Config{})
	n += len(e.produce(t, 20, 10, 15, 7))
	delivered := sk.AwaitOnce(t, 30*time.Second, n)
	r := delivered[0]
	if r.Topic != "test.orders" || r.Type != "test.orders" || r.CreatedAt.IsZero() || time.Since(r.CreatedAt) > time.Minute || r.Seq == 0 {
		t.Fatalf("record = %+v", r)
	}
	sourcetest.WaitFor(t, 10*time.Second, "acknowledged rows deleted", func() bool { return e.rows(t) == 0 })
	time.Sleep(200 * time.Millisecond) // anything else would have arrived by now
	if got := sk.Unique(); got != n {
		t.Fatalf("%d messages delivered, want %d", got, n)
	}
	// Everything is done: the saved position catches up.
	sourcetest.WaitFor(t, 10*time.Second, "nothing pending and the position saved", func() bool {
		st := src.Stats()
		return st.Pending == 0 && e.saved(t, e.table).Pos == st.Saved.Pos
	})
	t.Logf("stats %+v", src.Stats())
}

// TestRecordFields: every column reaches the record as the mysql store's claims read it:
// a NULL key is no key, headers are a JSON object (non-string values kept as JSON text),
// payload bytes are exact, created_at is the row's, attempts the row's.
func TestRecordFields(t *testing.T) {
	t.Parallel()
	e := setup(t)
	src := e.source(t, e.config(t))
	sk := sourcetest.NewSink()
	sourcetest.StartRelay(t, src, sk, relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
	id := outbox.NewID()
	e.commit(t, outbox.Message{ID: id, Topic: "orders.created", Key: "order-42", Type: "order.created",
		Payload: []byte{0, 1, 2, 255, 'x'}, Headers: map[string]string{"traceparent": "00-abc-def-01", "x-note": "cödé"}})
	// A row written by hand, as another language would: no key, no type, headers with
	// non-string values, a given created_at and attempts.
	hand := outbox.NewID()
	if _, err := e.db.Exec("INSERT INTO outbox (message_id, topic, `key`, payload, headers, created_at, attempts) VALUES (?, 'hand', NULL, 'p', ?, '2024-05-06 07:08:09.123456', 3)",
		hand.String(), `{"n": 1, "s": "x", "o": {"a": [1]}}`); err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, 10*time.Second, "both messages", func() bool { return sk.Unique() == 2 })
	got, _ := sk.Snapshot()
	a, b := got[0], got[1]
	if a.ID != id || a.Topic != "orders.created" || a.Key != "order-42" || a.Type != "order.created" ||
		string(a.Payload) != "\x00\x01\x02\xffx" || len(a.Headers) != 2 || a.Headers["x-note"] != "cödé" ||
		a.Headers["traceparent"] != "00-abc-def-01" || a.Attempts != 0 || time.Since(a.CreatedAt) > time.Minute || a.Seq <= 0 {
		t.Fatalf("record = %+v", a)
	}
	want := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	if b.ID != hand || b.Key != "" || b.Type != "" || string(b.Payload) != "p" || b.Headers["n"] != "1" || b.Headers["s"] != "x" ||
		b.Headers["o"] != `{"a": [1]}` || !b.CreatedAt.Equal(want) || b.Attempts != 3 || b.Seq != a.Seq+1 {
		t.Fatalf("hand-written record = %+v", b)
	}
	// The same row as a claim of the mysql store reads it.
	sourcetest.WaitFor(t, 10*time.Second, "rows deleted", func() bool { return e.rows(t) == 0 })
}

// TestUndecodableRow: a row no relay can read (written by hand) goes to the dead-letter table
// with the reason, and does not stop the stream.
func TestUndecodableRow(t *testing.T) {
	t.Parallel()
	e := setup(t)
	src := e.source(t, e.config(t))
	sk := sourcetest.NewSink()
	sourcetest.StartRelay(t, src, sk, relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
	if _, err := e.db.Exec("INSERT INTO outbox (message_id, topic, `key`, payload) VALUES ('not-a-uuid', 't', 'a', 'bad')"); err != nil {
		t.Fatal(err)
	}
	e.commit(t, outbox.Message{Topic: "t", Key: "a", Payload: []byte("a:0")})
	sourcetest.WaitFor(t, 10*time.Second, "the valid message", func() bool { return sk.Unique() == 1 })
	var lastErr, payload string
	sourcetest.WaitFor(t, 10*time.Second, "dead letter", func() bool {
		return e.db.QueryRow(`SELECT last_error, payload FROM outbox_dead`).Scan(&lastErr, &payload) == nil
	})
	if !strings.Contains(lastErr, "undecodable") || !strings.Contains(lastErr, "message_id") || payload != "bad" {
		t.Fatalf("dead letter: last_error %q, payload %q", lastErr, payload)
	}
	sourcetest.WaitFor(t, 10*time.Second, "nothing pending, rows deleted", func() bool { return src.Stats().Pending == 0 && e.rows(t) == 0 })
}

// TestRetryAndDeadLetter: a retried message holds back later messages of its key (only), and
// is delivered with its attempts counted; a permanently rejected one goes to the dead-letter
// table and its key goes on.
func TestRetryAndDeadLetter(t *testing.T) {
	t.Parallel()
	e := setup(t)
	src := e.source(t, e.config(t))
	sk := sourcetest.NewSink()
	failures := map[string]int{}
	sk.Fail = func(r *outbox.Record) error {
		switch string(r.Payload) {
		case "a:0":
			if failures["a:0"] < 3 {
				failures["a:0"]++
				return errors.New("broker busy")
			}
		case "b:0":
			return sink.Permanentf("message rejected")
		case "c:0":
			return errors.New("always failing")
		}
		return nil
	}
	sourcetest.StartRelay(t, src, sk, relay.Config{MaxAttempts: 5})
	sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
	for i := range 3 {
		var ms []outbox.Message
		for _, k := range []string{"a", "b", "c", "d"} {
			ms = append(ms, outbox.Message{Topic: "t", Key: k, Payload: fmt.Appendf(nil, "%s:%d", k, i)})
		}
		e.commit(t, ms...)
	}
	// a: 3 failures then delivered; b:0 dead at once; c:0 dead after 5 attempts; d untouched.
	sourcetest.WaitFor(t, 30*time.Second, "deliveries", func() bool { return sk.Unique() == 10 })
	delivered, _ := sk.Snapshot()
	pos := map[string]int{}
	for i, r := range delivered {
		pos[string(r.Payload)] = i
		if string(r.Payload) == "a:0" && r.Attempts != 3 {
			t.Errorf("a:0 delivered with attempts %d, want 3", r.Attempts)
		}
	}
	for _, p := range []string{"b:0", "c:0"} {
		if _, ok := pos[p]; ok {
			t.Fatalf("%s was delivered", p)
		}
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		for i := 1; i < 3; i++ {
			prev, cur := fmt.Sprintf("%s:%d", k, i-1), fmt.Sprintf("%s:%d", k, i)
			if p, ok := pos[prev]; ok && pos[cur] < p {
				t.Fatalf("order violated: %s before %s", cur, prev)
			}
		}
	}
	sourcetest.WaitFor(t, 10*time.Second, "dead letters", func() bool { return e.count(t, "outbox_dead") == 2 })
	dls, err := e.store.DeadLetters(context.Background(), 0, 10)
	if err != nil || len(dls) != 2 {
		t.Fatalf("dead letters = %+v, %v", dls, err)
	}
	for _, d := range dls {
		switch string(d.Record.Payload) {
		case "b:0":
			if d.Record.Attempts != 1 || !strings.Contains(d.LastError, "message rejected") || d.Record.Key != "b" {
				t.Errorf("b:0 dead letter = %+v", d)
			}
		case "c:0":
			if d.Record.Attempts != 5 || !strings.Contains(d.LastError, "after 5 attempts: always failing") {
				t.Errorf("c:0 dead letter = %+v", d)
			}
		default:
			t.Errorf("unexpected dead letter %+v", d)
		}
	}
	sourcetest.WaitFor(t, 10*time.Second, "rows deleted, nothing pending", func() bool { return e.rows(t) == 0 && src.Stats().Pending == 0 })
}

// TestRestartResumes stops a relay mid-stream and starts another source of the same name: it
// resumes from the saved position, nothing is lost, order holds, and little is sent again.
func TestRestartResumes(t *testing.T) {
	t.Parallel()
	e := setup(t)
	sourcetest.RestartResumes(t, e.scenarios(t), func(first *binlog.Source) string {
		saved := e.saved(t, e.table)
		if st := first.Stats(); st.Saved.GTID != saved.GTID || st.InFlightBatches != 0 {
			t.Errorf("after the stop: stats %+v, saved %v", st, saved)
		}
		return "saved " + saved.String()
	})
	sourcetest.WaitFor(t, 10*time.Second, "rows deleted", func() bool { return e.rows(t) == 0 })
}

// TestCrashRestart kills the source mid-stream (connections dropped, no final save, pending
// deletes abandoned) and restarts it: nothing is lost.
func TestCrashRestart(t *testing.T) {
	t.Parallel()
	e := setup(t)
	sourcetest.CrashRestart(t, e.scenarios(t))
	sourcetest.WaitFor(t, 10*time.Second, "rows deleted", func() bool { return e.rows(t) == 0 })
}

// TestStandbyTakesOver: a second source of the same name waits while the first streams, and
// takes over within its ReconnectInterval when the first one's lock connection goes.
func TestStandbyTakesOver(t *testing.T) {
	t.Parallel()
	e := setup(t)
	sk := sourcetest.NewSink()
	src1 := e.source(t, e.config(t))
	r1 := sourcetest.StartRelay(t, src1, sk, relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "first source streaming", func() bool { return src1.Stats().Streaming })
	cfg := e.config(t)
	cfg.ReconnectInterval = 200 * time.Millisecond
	src2 := e.source(t, cfg)
	r2 := sourcetest.StartRelay(t, src2, sk, relay.Config{})
	sourcetest.WaitFor(t, 10*time.Second, "second source standing by", func() bool { return src2.Stats().Standby })
	n := len(e.produce(t, 5, 0, 10, 5))
	sourcetest.WaitFor(t, 30*time.Second, "deliveries", func() bool { return sk.Unique() == n })
	if src2.Stats().Streaming {
		t.Fatal("the standby streams while the first source holds the lock")
	}
	// A crash: the first source's connections go, and with them its lock.
	src1.Crash()
	<-r1.Done
	stopped := time.Now()
	n += len(e.produce(t, 5, 10, 10, 5))
	sourcetest.WaitFor(t, 10*time.Second, "the standby to take over", func() bool { return src2.Stats().Streaming })
	sourcetest.WaitFor(t, 30*time.Second, "deliveries after the take-over", func() bool { return sk.Unique() == n })
	t.Logf("took over and delivered within %v", time.Since(stopped))
	delivered, _ := sk.Snapshot()
	sourcetest.CheckOrder(t, delivered)
	// And back: a graceful stop hands over too.
	src3 := e.source(t, cfg)
	sourcetest.StartRelay(t, src3, sk, relay.Config{})
	sourcetest.WaitFor(t, 10*time.Second, "third source standing by", func() bool { return src3.Stats().Standby })
	if err := r2.Stop(); err != nil {
		t.Fatal(err)
	}
	n += len(e.produce(t, 5, 20, 4, 5))
	sourcetest.WaitFor(t, 10*time.Second, "the third source to take over", func() bool { return src3.Stats().Streaming })
	sk.Await(t, 30*time.Second, "deliveries after the second take-over", n)
}

// TestLockLost: when the lock's connection is killed, the source stops streaming at once (a
// standby may have the lock by then), then takes the lock again and resumes.
func TestLockLost(t *testing.T) {
	t.Parallel()
	e := setup(t)
	sk := sourcetest.NewSink()
	sk.Delay.Store(int64(time.Millisecond))
	src := e.source(t, e.config(t))
	sourcetest.StartRelay(t, src, sk, relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
	n := len(e.produce(t, 10, 0, 20, 10))
	sourcetest.WaitFor(t, 30*time.Second, "some deliveries", func() bool { return sk.Unique() >= 50 })
	var id int64
	if err := e.db.QueryRow(`SELECT IS_USED_LOCK(?)`, binlog.LockName(e.dbName, e.table, e.table)).Scan(&id); err != nil || id == 0 {
		t.Fatalf("lock holder: %d, %v", id, err)
	}
	if _, err := e.db.Exec(`KILL ` + strconv.FormatInt(id, 10)); err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, 10*time.Second, "a new session", func() bool { return src.Stats().Reconnects >= 1 })
	n += len(e.produce(t, 10, 20, 10, 10))
	dups := sk.Await(t, 30*time.Second, "all messages", n)
	t.Logf("%d duplicates after the lock's connection was killed", dups)
	sourcetest.WaitFor(t, 10*time.Second, "rows deleted", func() bool { return e.rows(t) == 0 })
}

// TestConnectionCut cuts every connection of the source (replication and database) mid-stream
// and refuses new ones for a while: the source reconnects by itself and delivers everything in
// order.
func TestConnectionCut(t *testing.T) {
	t.Parallel()
	e := setup(t)
	mc, err := gomysql.ParseDSN(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := faultproxy.Start(t, mc.Addr)
	mc.Addr = proxy.Addr()
	conn, err := gomysql.NewConnector(mc)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { _ = db.Close() })
	repl, err := gomysql.ParseDSN(mysqltest.DSN())
	if err != nil {
		t.Fatal(err)
	}
	repl.Addr = proxy.Addr()
	cfg := e.config(t)
	cfg.DB, cfg.DSN = db, repl.FormatDSN()
	sk := sourcetest.NewSink()
	sk.Delay.Store(int64(2 * time.Millisecond))
	src := e.source(t, cfg)
	if err := src.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := len(e.produce(t, 10, 0, 60, 20))
	sourcetest.StartRelay(t, src, sk, relay.Config{})
	for cut := range 3 {
		sourcetest.WaitFor(t, 30*time.Second, "some deliveries", func() bool { return sk.Unique() >= 100*(cut+1) })
		proxy.Cut()
		n += len(e.produce(t, 10, 60+10*cut, 10, 20))
		time.Sleep(300 * time.Millisecond)
		proxy.Restore()
	}
	dups := sk.Await(t, 60*time.Second, "all messages", n)
	if st := src.Stats(); st.Reconnects < 3 {
		t.Fatalf("stats = %+v, want a reconnect after each cut", st)
	}
	t.Logf("%d duplicates after 3 cuts", dups)
	sourcetest.WaitFor(t, 30*time.Second, "rows deleted", func() bool { return e.rows(t) == 0 })
}

// TestLargeTransaction streams one transaction of 100,000 messages (10,000 with -short)
// through a source that may hold only MaxInFlight of them: it stops reading instead of
// buffering the transaction.
func TestLargeTransaction(t *testing.T) {
	t.Parallel()
	n, keys, maxInFlight := 100_000, 100, 10_000
	if testing.Short() {
		n, maxInFlight = 10_000, 1_000
	}
	e := setup(t)
	cfg := e.config(t)
	cfg.MaxInFlight = maxInFlight
	cfg.Logger = slog.New(slog.DiscardHandler)
	src := e.source(t, cfg)
	if err := src.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.commit(t, sourcetest.Messages(keys, 0, n/keys)...)
	sourcetest.LargeTransaction(t, src, func() (int, int, any) {
		st := src.Stats()
		return st.Pending, st.PendingPeak, st
	}, n, maxInFlight)
	sourcetest.WaitFor(t, time.Minute, "acknowledged rows deleted", func() bool { return e.rows(t) == 0 })
}

// TestKeepAckedProducerDeletes: the producer deletes its rows in the same transaction; the
// insert still travels in the binary log and is published, and the table never holds anything.
func TestKeepAckedProducerDeletes(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cfg := e.config(t)
	cfg.KeepAcked = true
	src := e.source(t, cfg)
	sk := sourcetest.NewSink()
	sk.SetFail(func(r *outbox.Record) error {
		if string(r.Payload) == "a:2" {
			return sink.Permanentf("no")
		}
		return nil
	})
	sourcetest.StartRelay(t, src, sk, relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
	ctx := context.Background()
	ms := sourcetest.Messages(1, 0, 3)
	for i := range ms {
		ms[i].Key = "a"
		ms[i].Payload = fmt.Appendf(nil, "a:%d", i)
		ms[i].ID = outbox.NewID()
	}
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.writer.Enqueue(ctx, tx, ms...); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`DELETE FROM outbox WHERE message_id IN (?, ?, ?)`, ms[0].ID.String(), ms[1].ID.String(), ms[2].ID.String()); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	sk.Await(t, 10*time.Second, "deliveries", 2)
	// The dead letter is written from the record: the row is gone.
	sourcetest.WaitFor(t, 10*time.Second, "dead letter", func() bool { return e.count(t, "outbox_dead") == 1 })
	if n := e.rows(t); n != 0 {
		t.Fatalf("%d rows in the table", n)
	}
}

// TestPositionFollowsOtherTraffic: with no outbox traffic, other tables' transactions still
// move the saved position (every HeartbeatInterval). (That the source's own saves do not keep
// it saving is checked in sched_test.go: the server is shared, so it is never idle here.)
func TestPositionFollowsOtherTraffic(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cfg := e.config(t)
	cfg.HeartbeatInterval = 200 * time.Millisecond
	src := e.source(t, cfg)
	sourcetest.StartRelay(t, src, sourcetest.NewSink(), relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
	start := e.saved(t, e.table)
	if _, err := e.db.Exec(`CREATE TABLE other (x INT)`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(`INSERT INTO other VALUES (1), (2), (3)`); err != nil {
		t.Fatal(err)
	}
	server, err := binlog.ServerPosition(context.Background(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, 10*time.Second, "the saved position to pass "+server.String(), func() bool {
		p := e.saved(t, e.table)
		return p.File > server.File || p.File == server.File && p.Pos >= server.Pos
	})
	moved := e.saved(t, e.table)
	if moved.GTID == start.GTID || !moved.UpdatedAt.After(start.UpdatedAt) {
		t.Fatalf("saved position %+v did not move from %+v", moved, start)
	}
	// A rotation to a new file moves it to that file.
	if _, err := e.db.Exec(`FLUSH BINARY LOGS`); err != nil {
		t.Fatal(err)
	}
	rotated, err := binlog.ServerPosition(context.Background(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, 10*time.Second, "the saved position to reach "+rotated.File, func() bool { return e.saved(t, e.table).File >= rotated.File })
}

// TestPositions: ServerPosition reads the server's position, ReadPosition a saved one.
func TestPositions(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	if _, ok, err := binlog.ReadPosition(ctx, e.db, "", "nobody"); ok || err != nil {
		t.Fatalf("ReadPosition of an unknown source = %v, %v", ok, err)
	}
	if _, _, err := binlog.ReadPosition(ctx, e.db, "missing", ""); err == nil || !strings.Contains(err.Error(), "migrations") {
		t.Fatalf("ReadPosition without the table = %v", err)
	}
	if _, _, err := binlog.ReadPosition(ctx, e.db, "a.b.c", ""); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Fatalf("ReadPosition of a bad table name = %v", err)
	}
	before, err := binlog.ServerPosition(ctx, e.db)
	if err != nil || before.File == "" || before.Pos < 4 || before.GTID == "" {
		t.Fatalf("ServerPosition = %+v, %v", before, err)
	}
	cfg := e.config(t)
	cfg.Name = "orders-relay"
	if err := e.source(t, cfg).Setup(ctx); err != nil {
		t.Fatal(err)
	}
	p := e.saved(t, "orders-relay")
	after, err := binlog.ServerPosition(ctx, e.db)
	if err != nil {
		t.Fatal(err)
	}
	// Saved at Setup: the server's position then, before the write of the position itself.
	if p.File != before.File || p.Pos < before.Pos || p.Pos >= after.Pos || time.Since(p.UpdatedAt) > time.Minute {
		t.Fatalf("saved %+v; server before %+v, after %+v", p, before, after)
	}
	t.Logf("server %v; saved %v", after, p)
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	db, _, _ := mysqltest.Database(t)
	good := binlog.Config{DSN: mysqltest.DSN(), DB: db}
	sourcetest.ConfigErrors(t, binlog.New, good, []struct {
		Field string
		Edit  func(*binlog.Config)
	}{
		{"dsn", func(c *binlog.Config) { c.DSN = "" }},
		{"dsn", func(c *binlog.Config) { c.DSN = "root@tcp(127.0.0.1:3306" }},
		{"dsn", func(c *binlog.Config) { c.DSN = "root@pipe(x)/" }},
		{"db", func(c *binlog.Config) { c.DB = nil }},
		{"table", func(c *binlog.Config) { c.Table = "a.b.c" }},
		{"table", func(c *binlog.Config) { c.Table = "x`; DROP TABLE y; --" }},
		{"name", func(c *binlog.Config) { c.Name = "a b" }},
		{"name", func(c *binlog.Config) { c.Name = strings.Repeat("n", 65) }},
		{"batch_size", func(c *binlog.Config) { c.BatchSize = -1 }},
		{"workers", func(c *binlog.Config) { c.Workers = 1000 }},
		{"max_in_flight", func(c *binlog.Config) { c.MaxInFlight = -5 }},
		{"max_in_flight_bytes", func(c *binlog.Config) { c.MaxInFlightBytes = -5 }},
		{"reconnect_interval", func(c *binlog.Config) { c.ReconnectInterval = time.Nanosecond }},
		{"shutdown_timeout", func(c *binlog.Config) { c.ShutdownTimeout = -time.Second }},
		{"position_interval", func(c *binlog.Config) { c.PositionInterval = time.Millisecond }},
		{"heartbeat_interval", func(c *binlog.Config) { c.HeartbeatInterval = 20 * time.Millisecond }},
	})
}

// TestSetupErrors: problems retrying cannot fix end Run with an error that says what to do.
func TestSetupErrors(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()

	cfg := e.config(t)
	cfg.Table = "missing"
	if err := e.source(t, cfg).Run(ctx); err == nil || !strings.Contains(err.Error(), "migrations") {
		t.Fatalf("Run with a missing table = %v", err)
	}
	if _, err := e.db.Exec(`DROP TABLE outbox_binlog`); err != nil {
		t.Fatal(err)
	}
	if err := e.source(t, e.config(t)).Run(ctx); err == nil || !strings.Contains(err.Error(), "outbox_binlog") {
		t.Fatalf("Run without the position table = %v", err)
	}
	var own uint32
	if err := e.db.QueryRow(`SELECT @@server_id`).Scan(&own); err != nil {
		t.Fatal(err)
	}
	cfg = e.config(t)
	cfg.ServerID = own
	if err := e.source(t, cfg).Run(ctx); err == nil || !strings.Contains(err.Error(), "server_id") {
		t.Fatalf("Run with the server's own server_id = %v", err)
	}
}

// TestWarnsAboutRowsBeforeStart: rows committed before the source's first start are not in its
// stream; starting says so instead of leaving them silently behind. Setup is idempotent.
func TestWarnsAboutRowsBeforeStart(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.commit(t, outbox.Message{Topic: "t", Key: "early"})
	rec := &logtest.Recorder{}
	cfg := e.config(t)
	cfg.Logger = slog.New(rec)
	if err := e.source(t, cfg).Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !rec.Has("WARN the outbox table already held rows") {
		t.Fatalf("no warning; logged %v", rec.Msgs())
	}
	first := e.saved(t, e.table)
	rec2 := &logtest.Recorder{}
	cfg.Logger = slog.New(rec2)
	if err := e.source(t, cfg).Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rec2.Has("INFO no saved position") || rec2.Has("WARN") || e.saved(t, e.table) != first {
		t.Fatalf("second setup logged %v", rec2.Msgs())
	}
}

// TestUnreadablePosition: a saved position the server cannot stream from (its binary logs
// purged, or another server's) is retried, and reported as an error that needs an operator.
func TestUnreadablePosition(t *testing.T) {
	t.Parallel()
	e := setup(t)
	if _, err := e.db.Exec(`INSERT INTO outbox_binlog (name, gtid, file, pos) VALUES ('outbox', '0-1-999999999', 'mariadb-bin.999999', 4)`); err != nil {
		t.Fatal(err)
	}
	rec := &logtest.Recorder{}
	cfg := e.config(t)
	cfg.Logger = slog.New(rec)
	src := e.source(t, cfg)
	sourcetest.StartRelay(t, src, sourcetest.NewSink(), relay.Config{})
	sourcetest.WaitFor(t, 10*time.Second, "the error", func() bool { return rec.Has("ERROR the server cannot stream the binary log from the saved position") })
	if p := e.saved(t, e.table); p.GTID != "0-1-999999999" {
		t.Fatalf("the saved position changed: %v", p)
	}
}

// TestResumesByCoordinates: a saved position without a GTID (a MariaDB server that had logged
// none at the first start, or MySQL without GTIDs) is resumed by file and position, and the
// GTID position is tracked from there.
func TestResumesByCoordinates(t *testing.T) {
	t.Parallel()
	e := setup(t)
	p, err := binlog.ServerPosition(context.Background(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(`INSERT INTO outbox_binlog (name, gtid, file, pos) VALUES ('outbox', '', ?, ?)`, p.File, p.Pos); err != nil {
		t.Fatal(err)
	}
	n := len(e.produce(t, 5, 0, 10, 5))
	sk := sourcetest.NewSink()
	src := e.source(t, e.config(t))
	r := sourcetest.StartRelay(t, src, sk, relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "all messages", func() bool { return sk.Unique() == n })
	delivered, _ := sk.Snapshot()
	if dups := sourcetest.CheckOrder(t, delivered); dups != 0 {
		t.Fatalf("%d duplicates", dups)
	}
	sourcetest.WaitFor(t, 10*time.Second, "a GTID position saved", func() bool { return e.saved(t, e.table).GTID != "" })
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	// The next start resumes by GTID from there.
	n += len(e.produce(t, 5, 10, 4, 5))
	sourcetest.StartRelay(t, e.source(t, e.config(t)), sk, relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "the later messages", func() bool { return sk.Unique() == n })
	delivered, _ = sk.Snapshot()
	if dups := sourcetest.CheckOrder(t, delivered); dups != 0 {
		t.Fatalf("%d duplicates after a graceful restart", dups)
	}
}

// TestUndecodableRowCases: every row of the conformance suite's MySQL case table that the
// binlog carries (any unreadable column) goes to the dead-letter table with a reason naming
// the column, and the stream goes on with the rest of the key.
func TestUndecodableRowCases(t *testing.T) {
	t.Parallel()
	e := setup(t)
	src := e.source(t, e.config(t))
	sk := sourcetest.NewSink()
	sourcetest.StartRelay(t, src, sk, relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
	var cols []string
	for i, tc := range dialecttest.MySQLUnreadable {
		if tc.Setup != nil {
			continue // about the store's dead-letter copy, not decoding
		}
		if _, err := e.db.Exec(strings.ReplaceAll(tc.Insert, "{table}", "`outbox`")); err != nil {
			t.Fatalf("%s: %v", tc.Name, err)
		}
		e.commit(t, outbox.Message{Topic: "t", Key: "k", Payload: fmt.Appendf(nil, "k:%d", i)})
		cols = append(cols, tc.Column)
	}
	sourcetest.WaitFor(t, 10*time.Second, "the valid messages", func() bool { return sk.Unique() == len(cols) })
	sourcetest.WaitFor(t, 10*time.Second, "dead letters", func() bool { return e.count(t, "outbox_dead") == len(cols) })
	rows, err := e.db.Query(`SELECT last_error FROM outbox_dead ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for i := 0; rows.Next(); i++ {
		var reason string
		if err := rows.Scan(&reason); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(reason, "column "+cols[i]) {
			t.Fatalf("dead letter %d: reason %q does not name column %s", i, reason, cols[i])
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, 10*time.Second, "nothing pending, rows deleted", func() bool { return src.Stats().Pending == 0 && e.rows(t) == 0 })
}

// A paused topic's messages, read from the binary log, are held by the relay until the resume.
func TestPausedTopicHeld(t *testing.T) {
	t.Parallel()
	e := setup(t)
	sourcetest.PausedTopicHeld(t, e.scenarios(t), e.store, func(s *binlog.Source) int { return s.Stats().Pending })
	sourcetest.WaitFor(t, 10*time.Second, "rows deleted", func() bool { return e.rows(t) == 0 })
}
