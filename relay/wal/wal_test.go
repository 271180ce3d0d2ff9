package wal_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/dialecttest"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/internal/session"
	"github.com/outboxgo/outbox/relay/wal"
	"github.com/outboxgo/outbox/sink"
)

func TestDeliversInKeyOrder(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e := setup(t, mode)
			src := e.source(t, e.config(t))
			if err := src.Setup(context.Background()); err != nil {
				t.Fatal(err)
			}
			// Some before the relay starts, some while it runs.
			n := len(e.produce(t, 20, 0, 10, 10))
			sk := sourcetest.NewSink()
			sourcetest.StartRelay(t, src, sk, relay.Config{})
			n += len(e.produce(t, 20, 10, 15, 7))
			delivered := sk.AwaitOnce(t, 30*time.Second, n)
			r := delivered[0]
			if r.Topic != "test.orders" || r.Type != "test.orders" && r.Type != "" || r.CreatedAt.IsZero() || time.Since(r.CreatedAt) > time.Minute {
				t.Fatalf("record = %+v", r)
			}
			if mode == wal.ModeTable {
				sourcetest.WaitFor(t, 10*time.Second, "acknowledged rows deleted", func() bool { return e.rows(t) == 0 })
			}
			// Everything is done: the slot's position catches up with the server.
			sourcetest.WaitFor(t, 10*time.Second, "slot position to catch up", func() bool {
				lag, err := src.Lag(context.Background())
				return err == nil && lag < 1<<20 && src.Stats().Pending == 0
			})
		})
	}
}

func TestRollbackPublishesNothing(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e := setup(t, mode)
			sk := sourcetest.NewSink()
			src := e.source(t, e.config(t))
			if err := src.Setup(context.Background()); err != nil {
				t.Fatal(err)
			}
			sourcetest.StartRelay(t, src, sk, relay.Config{})
			ctx := context.Background()
			errBusiness := errors.New("business rule failed")
			err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
				if err := e.enqueue(ctx, tx, outbox.Message{Topic: "test.rolledback", Key: "x"}); err != nil {
					return err
				}
				return errBusiness
			})
			if !errors.Is(err, errBusiness) {
				t.Fatalf("tx error = %v", err)
			}
			e.commit(t, outbox.Message{Topic: "test.committed", Key: "x"})
			sourcetest.WaitFor(t, 10*time.Second, "committed message", func() bool { return sk.Unique() == 1 })
			time.Sleep(200 * time.Millisecond) // anything else would have arrived with it
			got, _ := sk.Snapshot()
			if len(got) != 1 || got[0].Topic != "test.committed" {
				t.Fatalf("delivered %+v, want only test.committed", got)
			}
		})
	}
}

// TestLargeTransaction streams one transaction of 100,000 messages through a source that may
// hold only MaxInFlight of them: the stream pauses instead of buffering the transaction.
func TestLargeTransaction(t *testing.T) {
	t.Parallel()
	const n, keys, maxInFlight = 100_000, 100, 10_000
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e := setup(t, mode)
			cfg := e.config(t)
			cfg.MaxInFlight = maxInFlight
			src := e.source(t, cfg)
			if err := src.Setup(context.Background()); err != nil {
				t.Fatal(err)
			}
			e.produce(t, keys, 0, n/keys, n)
			sourcetest.LargeTransaction(t, src, func() (int, int, any) {
				st := src.Stats()
				return st.Pending, st.PendingPeak, st
			}, n, maxInFlight)
			if mode == wal.ModeTable {
				sourcetest.WaitFor(t, 30*time.Second, "acknowledged rows deleted", func() bool { return e.rows(t) == 0 })
			}
		})
	}
}

// TestRetryAndDeadLetter: a retried message holds back later messages of its key (only), and
// is delivered with its attempts counted; a permanently rejected one goes to the dead-letter
// table and its key goes on.
func TestRetryAndDeadLetter(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e := setup(t, mode)
			src := e.source(t, e.config(t))
			sk := sourcetest.NewSink()
			failures := map[string]int{}
			sk.Fail = func(r *outbox.Record) error {
				switch string(r.Payload) {
				case "a:0":
					if failures["a:0"] < 2 {
						failures["a:0"]++
						return errors.New("broker busy")
					}
				case "b:0":
					return sink.Permanentf("message rejected")
				}
				return nil
			}
			sourcetest.StartRelay(t, src, sk, relay.Config{})
			sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
			e.commit(t,
				outbox.Message{Topic: "t", Key: "a", Payload: []byte("a:0")},
				outbox.Message{Topic: "t", Key: "b", Payload: []byte("b:0")},
				outbox.Message{Topic: "t", Key: "c", Payload: []byte("c:0")})
			e.commit(t,
				outbox.Message{Topic: "t", Key: "a", Payload: []byte("a:1")},
				outbox.Message{Topic: "t", Key: "b", Payload: []byte("b:1")},
				outbox.Message{Topic: "t", Key: "c", Payload: []byte("c:1")})
			sourcetest.WaitFor(t, 30*time.Second, "deliveries", func() bool { return sk.Unique() == 5 })
			delivered, _ := sk.Snapshot()
			// b:0 is dead: renumber b's sequence for the order check.
			pos := map[string]int{}
			for i, r := range delivered {
				pos[string(r.Payload)] = i
				if string(r.Payload) == "a:0" && r.Attempts != 2 {
					t.Errorf("a:0 delivered with attempts %d, want 2", r.Attempts)
				}
			}
			if _, ok := pos["b:0"]; ok {
				t.Fatal("b:0 was delivered")
			}
			if pos["a:1"] < pos["a:0"] || pos["c:1"] < pos["c:0"] {
				t.Fatalf("order violated: %v", pos)
			}
			var (
				payload  []byte
				lastErr  string
				attempts int
			)
			sourcetest.WaitFor(t, 10*time.Second, "dead letter", func() bool {
				err := e.pool.QueryRow(context.Background(), `SELECT payload, last_error, attempts FROM `+e.table+`_dead`).Scan(&payload, &lastErr, &attempts)
				return err == nil
			})
			if string(payload) != "b:0" || attempts != 1 || !strings.Contains(lastErr, "message rejected") {
				t.Fatalf("dead letter = %q %q %d", payload, lastErr, attempts)
			}
			dls, err := e.store.DeadLetters(context.Background(), 0, 10)
			if err != nil || len(dls) != 1 || dls[0].Record.Key != "b" || dls[0].Record.Topic != "t" {
				t.Fatalf("store dead letters = %+v, %v", dls, err)
			}
			if mode == wal.ModeTable {
				sourcetest.WaitFor(t, 10*time.Second, "rows deleted", func() bool { return e.rows(t) == 0 })
			}
			sourcetest.WaitFor(t, 10*time.Second, "nothing pending", func() bool { return src.Stats().Pending == 0 })
		})
	}
}

// TestRestartResumes stops a relay mid-stream and starts another source on the same slot:
// it resumes from the confirmed position, nothing is lost, order holds.
func TestRestartResumes(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e := setup(t, mode)
			sourcetest.RestartResumes(t, e.scenarios(t), func(*wal.Source) string { return "slot at " + e.confirmedLSN(t) })
		})
	}
}

// TestCrashRestart kills the source mid-stream (connection closed abruptly, nothing confirmed
// at exit, pending deletes abandoned) and restarts on the same slot: nothing is lost.
func TestCrashRestart(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e := setup(t, mode)
			sourcetest.CrashRestart(t, e.scenarios(t))
			if mode == wal.ModeTable {
				sourcetest.WaitFor(t, 10*time.Second, "rows deleted", func() bool { return e.rows(t) == 0 })
			}
		})
	}
}

// TestConnectionCut terminates the walsender mid-stream: the source reconnects by itself and
// delivers everything in order.
func TestConnectionCut(t *testing.T) {
	t.Parallel()
	e := setup(t, wal.ModeLogical)
	sk := sourcetest.NewSink()
	sk.Delay.Store(int64(2 * time.Millisecond))
	src := e.source(t, e.config(t))
	if err := src.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	n := len(e.produce(t, 10, 0, 60, 20))
	sourcetest.StartRelay(t, src, sk, relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "some deliveries", func() bool { return sk.Unique() >= 150 })
	if _, err := e.pool.Exec(context.Background(),
		`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1`, e.slot); err != nil {
		t.Fatal(err)
	}
	n += len(e.produce(t, 10, 60, 10, 20))
	dups := sk.Await(t, 60*time.Second, "all messages", n)
	if st := src.Stats(); st.Reconnects < 1 {
		t.Fatalf("stats = %+v, want a reconnect", st)
	}
	t.Logf("%d duplicates after the cut", dups)
}

// TestStandbyTakesOver: a second source on the same slot waits while the first streams, and
// takes over within seconds when it stops.
func TestStandbyTakesOver(t *testing.T) {
	t.Parallel()
	e := setup(t, wal.ModeLogical)
	sk := sourcetest.NewSink()
	src1 := e.source(t, e.config(t))
	r1 := sourcetest.StartRelay(t, src1, sk, relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "first source streaming", func() bool { return src1.Stats().Streaming })
	cfg := e.config(t)
	cfg.ReconnectInterval = 200 * time.Millisecond
	src2 := e.source(t, cfg)
	sourcetest.StartRelay(t, src2, sk, relay.Config{})
	n := len(e.produce(t, 5, 0, 10, 5))
	sourcetest.WaitFor(t, 30*time.Second, "deliveries", func() bool { return sk.Unique() == n })
	if src2.Stats().Streaming {
		t.Fatal("the standby streams while the first source holds the slot")
	}
	if err := r1.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	n += len(e.produce(t, 5, 10, 10, 5))
	sourcetest.WaitFor(t, 10*time.Second, "the standby to take over", func() bool { return src2.Stats().Streaming })
	sourcetest.WaitFor(t, 30*time.Second, "deliveries after the take-over", func() bool { return sk.Unique() == n })
	t.Logf("took over and delivered within %v", time.Since(stopped))
	delivered, _ := sk.Snapshot()
	sourcetest.CheckOrder(t, delivered)
}

// TestLagGuard: while the sink fails, the slot holds WAL back and the guard warns; once the
// sink recovers, the position moves on.
func TestLagGuard(t *testing.T) {
	t.Parallel()
	e := setup(t, wal.ModeLogical)
	rec := &logtest.Recorder{}
	cfg := e.config(t)
	cfg.Logger = slog.New(rec)
	cfg.MaxRetainedBytes = 1
	cfg.LagCheckInterval = 50 * time.Millisecond
	src := e.source(t, cfg)
	if _, err := src.Lag(context.Background()); !errors.Is(err, wal.ErrSlotNotFound) {
		t.Fatalf("Lag before setup = %v, want ErrSlotNotFound", err)
	}
	if err := src.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	sk := sourcetest.NewSink()
	sk.SetFail(func(*outbox.Record) error { return errors.New("broker down") })
	sourcetest.StartRelay(t, src, sk, relay.Config{BackoffBase: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, MaxAttempts: 1 << 30})
	sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
	e.produce(t, 3, 0, 10, 10)
	var after string
	if err := e.pool.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, 10*time.Second, "lag warning", func() bool { return rec.Has("WARN replication slot retains more WAL") })
	sourcetest.WaitFor(t, 10*time.Second, "messages read", func() bool { return src.Stats().Pending == 30 })
	time.Sleep(5 * cfg.StatusInterval)
	lag, err := src.Lag(context.Background())
	if err != nil || lag <= 0 {
		t.Fatalf("Lag = %d, %v while the sink fails", lag, err)
	}
	held := e.confirmedLSN(t)
	var passed bool
	if err := e.pool.QueryRow(context.Background(), `SELECT $1::pg_lsn >= $2::pg_lsn`, held, after).Scan(&passed); err != nil || passed {
		t.Fatalf("slot confirmed %s, past the unacknowledged messages (committed before %s)", held, after)
	}
	sk.SetFail(nil)
	sourcetest.WaitFor(t, 30*time.Second, "recovery", func() bool { return sk.Unique() == 30 })
	sourcetest.WaitFor(t, 10*time.Second, "slot to move on", func() bool { return e.confirmedLSN(t) != held })
	t.Logf("lag while failing: %d bytes", lag)
}

// TestIdleSlotFollowsServer: with no outbox traffic at all, the slot still confirms the
// server's position (other databases' and tables' WAL), so an idle outbox pins no WAL.
func TestIdleSlotFollowsServer(t *testing.T) {
	t.Parallel()
	e := setup(t, wal.ModeLogical)
	cfg := e.config(t)
	cfg.HeartbeatInterval = 50 * time.Millisecond
	src := e.source(t, cfg)
	sourcetest.StartRelay(t, src, sourcetest.NewSink(), relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
	ctx := context.Background()
	if _, err := e.pool.Exec(ctx, `CREATE TABLE `+e.table+`_other (x int); INSERT INTO `+e.table+`_other SELECT generate_series(1, 1000)`); err != nil {
		t.Fatal(err)
	}
	var target string
	if err := e.pool.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&target); err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, 10*time.Second, "slot to pass "+target, func() bool {
		var passed bool
		err := e.pool.QueryRow(ctx, `SELECT confirmed_flush_lsn >= $2::pg_lsn FROM pg_replication_slots WHERE slot_name = $1`, e.slot, target).Scan(&passed)
		return err == nil && passed
	})
}

// TestUndecodableMessage: a message with the outbox prefix that is not a valid encoding goes
// to the dead-letter table with the reason, and does not block the stream.
func TestUndecodableMessage(t *testing.T) {
	t.Parallel()
	e := setup(t, wal.ModeLogical)
	src := e.source(t, e.config(t))
	sk := sourcetest.NewSink()
	sourcetest.StartRelay(t, src, sk, relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_logical_emit_message(true, $1::text, '\x02ff'::bytea)`, e.prefix); err != nil {
			return err
		}
		return e.logical.Enqueue(ctx, tx, outbox.Message{Topic: "t", Key: "a", Payload: []byte("a:0")})
	})
	if err != nil {
		t.Fatal(err)
	}
	sourcetest.WaitFor(t, 10*time.Second, "the valid message", func() bool { return sk.Unique() == 1 })
	var lastErr string
	sourcetest.WaitFor(t, 10*time.Second, "dead letter", func() bool {
		return e.pool.QueryRow(ctx, `SELECT last_error FROM `+e.table+`_dead`).Scan(&lastErr) == nil
	})
	if !strings.Contains(lastErr, "undecodable") {
		t.Fatalf("last_error = %q", lastErr)
	}
	sourcetest.WaitFor(t, 10*time.Second, "nothing pending", func() bool { return src.Stats().Pending == 0 })
}

// TestKeepAckedProducerDeletes: the producer deletes its rows in the same transaction; the
// insert still travels in the WAL and is published, and the table never holds anything.
func TestKeepAckedProducerDeletes(t *testing.T) {
	t.Parallel()
	e := setup(t, wal.ModeTable)
	cfg := e.config(t)
	cfg.KeepAcked = true
	src := e.source(t, cfg)
	sk := sourcetest.NewSink()
	sourcetest.StartRelay(t, src, sk, relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
	ctx := context.Background()
	msgs := []outbox.Message{{Topic: "t", Key: "a", Payload: []byte("a:0")}, {Topic: "t", Key: "a", Payload: []byte("a:1")}}
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		if err := e.writer.Enqueue(ctx, tx, msgs...); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM `+e.table+` WHERE message_id = ANY($1::uuid[])`, []string{msgs[0].ID.String(), msgs[1].ID.String()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sk.Await(t, 10*time.Second, "deliveries", 2)
	if n := e.rows(t); n != 0 {
		t.Fatalf("%d rows in the table", n)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.Schema(t)
	good := wal.Config{ConnString: pgtest.URL(), Pool: pool, SlotName: "s"}
	sourcetest.ConfigErrors(t, wal.New, good, []struct {
		Field string
		Edit  func(*wal.Config)
	}{
		{"conn_string", func(c *wal.Config) { c.ConnString = "" }},
		{"conn_string", func(c *wal.Config) { c.ConnString = pgtest.URL() + "&replication=true" }},
		{"conn_string", func(c *wal.Config) { c.ConnString = "postgres://[bad" }},
		{"pool", func(c *wal.Config) { c.Pool = nil }},
		{"slot_name", func(c *wal.Config) { c.SlotName = "" }},
		{"slot_name", func(c *wal.Config) { c.SlotName = "Upper" }},
		{"slot_name", func(c *wal.Config) { c.SlotName = "a-b" }},
		{"slot_name", func(c *wal.Config) { c.SlotName = strings.Repeat("s", 64) }},
		{"publication", func(c *wal.Config) { c.Publication = `p"; DROP TABLE x; --` }},
		{"table", func(c *wal.Config) { c.Table = "a.b.c" }},
		{"mode", func(c *wal.Config) { c.Mode = "poll" }},
		{"message_prefix", func(c *wal.Config) { c.MessagePrefix = "a\nb" }},
		{"batch_size", func(c *wal.Config) { c.BatchSize = -1 }},
		{"workers", func(c *wal.Config) { c.Workers = 1000 }},
		{"status_interval", func(c *wal.Config) { c.StatusInterval = time.Millisecond }},
		{"max_in_flight", func(c *wal.Config) { c.MaxInFlight = -5 }},
		{"max_in_flight_bytes", func(c *wal.Config) { c.MaxInFlightBytes = -5 }},
		{"reconnect_interval", func(c *wal.Config) { c.ReconnectInterval = time.Nanosecond }},
		{"shutdown_timeout", func(c *wal.Config) { c.ShutdownTimeout = -time.Second }},
	})
}

// TestSetupErrors: problems retrying cannot fix end Run with an error that says what to do.
func TestSetupErrors(t *testing.T) {
	t.Parallel()
	e := setup(t, wal.ModeTable)
	ctx := context.Background()

	cfg := e.config(t)
	cfg.Table = e.table + "_missing"
	src := e.source(t, cfg)
	if err := src.Run(ctx); err == nil || !strings.Contains(err.Error(), "migrations") {
		t.Fatalf("Run with a missing table = %v", err)
	}

	// A slot of the same name made for another plugin.
	if _, err := e.pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'test_decoding')`, e.slot); err != nil {
		t.Fatal(err)
	}
	src = e.source(t, e.config(t))
	if err := src.Run(ctx); err == nil || !strings.Contains(err.Error(), "pgoutput") {
		t.Fatalf("Run with a test_decoding slot = %v", err)
	}
}

// TestWarnsAboutRowsBeforeSlot: rows committed before the slot existed are not in its stream;
// creating the slot says so instead of leaving them silently behind.
func TestWarnsAboutRowsBeforeSlot(t *testing.T) {
	t.Parallel()
	e := setup(t, wal.ModeTable)
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
	// Setup is idempotent: the second call finds the slot and the publication.
	rec2 := &logtest.Recorder{}
	cfg.Logger = slog.New(rec2)
	if err := e.source(t, cfg).Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rec2.Has("INFO created") || rec2.Has("WARN") {
		t.Fatalf("second setup logged %v", rec2.Msgs())
	}
}

// TestUndecodableRowCases: every row of the conformance suite's PostgreSQL case table that
// the WAL source decodes (any unreadable column) goes to the dead-letter table with a reason
// naming the column, and the stream goes on with the rest of the key.
func TestUndecodableRowCases(t *testing.T) {
	t.Parallel()
	e := setup(t, wal.ModeTable)
	src := e.source(t, e.config(t))
	sk := sourcetest.NewSink()
	sourcetest.StartRelay(t, src, sk, relay.Config{})
	sourcetest.WaitFor(t, 30*time.Second, "streaming", func() bool { return src.Stats().Streaming })
	ctx := context.Background()
	var cols []string
	for i, tc := range dialecttest.PostgresUnreadable {
		if tc.Setup != nil || tc.Column == "available_at" {
			continue // the source reads no available_at; Setup cases are about the store's copy
		}
		if _, err := e.pool.Exec(ctx, strings.ReplaceAll(tc.Insert, "{table}", e.table)); err != nil {
			t.Fatalf("%s: %v", tc.Name, err)
		}
		e.commit(t, outbox.Message{Topic: "t", Key: "k", Payload: fmt.Appendf(nil, "k:%d", i)})
		cols = append(cols, tc.Column)
	}
	sourcetest.WaitFor(t, 10*time.Second, "the valid messages", func() bool { return sk.Unique() == len(cols) })
	var reasons []string
	sourcetest.WaitFor(t, 10*time.Second, "dead letters", func() bool {
		rows, err := e.pool.Query(ctx, `SELECT last_error FROM `+e.table+`_dead ORDER BY id`)
		if err != nil {
			return false
		}
		reasons, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err == nil && len(reasons) == len(cols)
	})
	for i, r := range reasons {
		if !strings.Contains(r, "column "+cols[i]) {
			t.Fatalf("dead letter %d: reason %q does not name column %s", i, r, cols[i])
		}
	}
	sourcetest.WaitFor(t, 10*time.Second, "nothing pending, rows deleted", func() bool { return src.Stats().Pending == 0 && e.rows(t) == 0 })
}

// TestSetupFailureLeavesNoPublication: a setup whose slot cannot be made (here: a physical
// slot holds the name) drops the publication it created, and says why.
func TestSetupFailureLeavesNoPublication(t *testing.T) {
	t.Parallel()
	e := setup(t, wal.ModeTable)
	ctx := context.Background()
	if _, err := e.pool.Exec(ctx, `SELECT pg_create_physical_replication_slot($1)`, e.slot); err != nil {
		t.Fatal(err)
	}
	src := e.source(t, e.config(t))
	err := src.Setup(ctx)
	if err == nil || !strings.Contains(err.Error(), "not a logical slot") {
		t.Fatalf("Setup = %v, want the slot refused", err)
	}
	var n int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM pg_publication WHERE pubname = $1`, e.slot).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d publications %s left behind (%v)", n, e.slot, err)
	}
}

// TestWALLevelError: a server without wal_level = logical is a setup error (Run returns it
// instead of retrying), ErrWALLevel, that says what to change.
func TestWALLevelError(t *testing.T) {
	for _, level := range []string{"replica", "minimal"} {
		err := wal.CheckWALLevel(level)
		if !errors.Is(err, wal.ErrWALLevel) || !session.IsSetup(err) || !strings.Contains(err.Error(), "wal_level = logical") {
			t.Fatalf("wal_level %s: %v", level, err)
		}
	}
	if err := wal.CheckWALLevel("logical"); err != nil {
		t.Fatalf("wal_level logical: %v", err)
	}
}

// A paused topic's messages, read from the WAL, are held by the relay until the resume.
func TestPausedTopicHeld(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e := setup(t, mode)
			sourcetest.PausedTopicHeld(t, e.scenarios(t), e.store, func(s *wal.Source) int { return s.Stats().Pending })
		})
	}
}
