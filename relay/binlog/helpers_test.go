package binlog_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/internal/mysqltest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/binlog"
	"github.com/outboxgo/outbox/sink"
)

// env is one test's database with the migrated outbox tables.
type env struct {
	db     *sql.DB
	dsn    string // the database's DSN
	dbName string
	table  string
	store  *mysql.Store
	writer *outbox.Writer
}

func setup(tb testing.TB) *env {
	tb.Helper()
	db, dsn, name := mysqltest.Database(tb)
	store, err := mysql.New(context.Background(), mysql.Config{DB: db})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := store.MigrateUp(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return &env{db: db, dsn: dsn, dbName: name, table: outbox.DefaultTable, store: store, writer: store.Writer()}
}

// config is a source configuration for e with test-friendly intervals, logging to the test.
func (e *env) config(tb testing.TB) binlog.Config {
	return binlog.Config{
		Logger:            testLogger(tb),
		DSN:               mysqltest.DSN(),
		DB:                e.db,
		Table:             e.table,
		PositionInterval:  50 * time.Millisecond,
		ReconnectInterval: 100 * time.Millisecond,
	}
}

func (e *env) source(tb testing.TB, cfg binlog.Config) *binlog.Source {
	tb.Helper()
	src, err := binlog.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return src
}

func testLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testWriter sends log lines to the test's log.
type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// running is a relay started by startRelay.
type running struct {
	stop func() error // cancels and waits; returns Run's error
	done chan struct{}
}

// startRelay runs a relay over src until the test ends (or stop is called).
func startRelay(tb testing.TB, src *binlog.Source, sk sink.Sink, rcfg relay.Config) *running {
	tb.Helper()
	rcfg.Source, rcfg.Sink = src, sk
	if rcfg.Logger == nil {
		rcfg.Logger = slog.New(slog.NewTextHandler(testWriter{tb}, nil))
	}
	if rcfg.BackoffBase == 0 {
		rcfg.BackoffBase, rcfg.BackoffMax = 5*time.Millisecond, 50*time.Millisecond
	}
	r, err := relay.New(rcfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		errc <- r.Run(ctx)
		close(done)
	}()
	var (
		once   sync.Once
		runErr error
	)
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-errc:
			case <-time.After(60 * time.Second):
				runErr = errors.New("relay did not stop within 60s")
				tb.Error(runErr)
			}
		})
		return runErr
	}
	tb.Cleanup(func() { _ = stop() })
	return &running{stop: stop, done: done}
}

// msgs builds keys×perKey messages, payload "key:seq" with a per-key sequence from from, in
// sequence order.
func msgs(keys, from, perKey int) []outbox.Message {
	var out []outbox.Message
	for i := from; i < from+perKey; i++ {
		for k := range keys {
			key := fmt.Sprintf("k%d", k)
			out = append(out, outbox.Message{Topic: "test.orders", Key: key, Payload: []byte(key + ":" + strconv.Itoa(i))})
		}
	}
	return out
}

// produce commits keys×perKey messages (see msgs), perTx per transaction.
func (e *env) produce(tb testing.TB, keys, from, perKey, perTx int) []outbox.Message {
	tb.Helper()
	all := msgs(keys, from, perKey)
	for start := 0; start < len(all); start += perTx {
		e.commit(tb, all[start:min(start+perTx, len(all))]...)
	}
	return all
}

// commit enqueues ms in one transaction.
func (e *env) commit(tb testing.TB, ms ...outbox.Message) {
	tb.Helper()
	if err := e.store.Enqueue(context.Background(), ms...); err != nil {
		tb.Fatal(err)
	}
}

func (e *env) rows(tb testing.TB) int {
	tb.Helper()
	return e.count(tb, e.table)
}

func (e *env) count(tb testing.TB, table string) int {
	tb.Helper()
	var n int
	if err := e.db.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func (e *env) saved(tb testing.TB, name string) binlog.Position {
	tb.Helper()
	p, ok, err := binlog.ReadPosition(context.Background(), e.db, e.table, name)
	if err != nil || !ok {
		tb.Fatalf("ReadPosition = %+v, %v, %v", p, ok, err)
	}
	return p
}

// memSink records deliveries and can fail chosen messages or stall.
type memSink struct {
	mu        sync.Mutex
	delivered []outbox.Record
	count     map[string]int
	fail      func(r *outbox.Record) error
	delay     atomic.Int64 // per Publish call, nanoseconds
	keep      bool         // keep the delivered records (order checks)
	total     atomic.Int64
	gate      chan struct{} // when set, Publish waits until it is closed
}

func newMemSink() *memSink { return &memSink{count: map[string]int{}, keep: true} }

func (s *memSink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	res := make([]error, len(msgs))
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return sink.FailAll(len(msgs), ctx.Err())
		}
	}
	if d := time.Duration(s.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return sink.FailAll(len(msgs), ctx.Err())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range msgs {
		if s.fail != nil {
			if err := s.fail(m); err != nil {
				res[i] = err
				continue
			}
		}
		if s.keep {
			s.delivered = append(s.delivered, *m)
		}
		s.count[m.ID.String()]++
		s.total.Add(1)
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

func (s *memSink) setFail(f func(r *outbox.Record) error) {
	s.mu.Lock()
	s.fail = f
	s.mu.Unlock()
}

func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkOrder verifies that, per key, first deliveries arrive in sequence order, and returns
// the number of duplicates.
func checkOrder(tb testing.TB, delivered []outbox.Record) (dups int) {
	tb.Helper()
	next := map[string]int{}
	seen := map[string]bool{}
	for _, r := range delivered {
		id := r.ID.String()
		if seen[id] {
			dups++
			continue
		}
		seen[id] = true
		key, n := parse(string(r.Payload))
		if key != r.Key {
			tb.Fatalf("payload %q delivered with key %q", r.Payload, r.Key)
		}
		if n != next[r.Key] {
			tb.Fatalf("key %s: got seq %d, want %d (order violated)", r.Key, n, next[r.Key])
		}
		next[r.Key] = n + 1
	}
	return dups
}

func parse(p string) (string, int) {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == ':' {
			n, _ := strconv.Atoi(p[i+1:])
			return p[:i], n
		}
	}
	return p, -1
}

// logRecorder captures log records for assertions.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) has(prefix string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.HasPrefix(m, prefix) {
			return true
		}
	}
	return false
}
