package wal_test

import (
	"context"
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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/pgtest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/wal"
	"github.com/outboxgo/outbox/sink"
)

// slotPrefix starts the name of every slot these tests create, so TestMain can find leftovers.
const slotPrefix = "outbox_wal_"

// slotTokens bounds how many tests hold a slot at once: the server allows only
// max_replication_slots (and max_wal_senders) for everyone sharing it.
var slotTokens = make(chan struct{}, 4)

// env is one test's database schema (migrated outbox tables), slot and publication names, and
// message prefix.
type env struct {
	pool    *pgxpool.Pool
	table   string
	store   *postgres.Store
	writer  *outbox.Writer
	logical *outbox.LogicalWriter
	slot    string
	prefix  string
	mode    wal.Mode
}

func setup(tb testing.TB, mode wal.Mode) *env {
	tb.Helper()
	pool, schema := pgtest.Schema(tb)
	table := schema + ".outbox"
	store, err := postgres.New(context.Background(), postgres.Config{Pool: pool, Table: table})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := store.MigrateUp(context.Background()); err != nil {
		tb.Fatal(err)
	}
	e := &env{pool: pool, table: table, store: store, writer: store.Writer(), mode: mode,
		slot: slotPrefix + schema[2:], prefix: "outbox-" + schema}
	e.logical, err = outbox.NewLogicalWriter(outbox.LogicalWriterConfig{Prefix: e.prefix})
	if err != nil {
		tb.Fatal(err)
	}
	slotTokens <- struct{}{}
	tb.Cleanup(func() {
		defer func() { <-slotTokens }()
		dropSlot(tb, pool, e.slot)
	})
	return e
}

// dropSlot drops the test's slot and publication (see pgtest.DropSlot).
func dropSlot(tb testing.TB, pool *pgxpool.Pool, slot string) {
	tb.Helper()
	pgtest.DropSlot(tb, pool, slot)
}

// config is a source configuration for e with test-friendly intervals, logging to the test.
func (e *env) config(tb testing.TB) wal.Config {
	return wal.Config{
		Logger:            slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ConnString:        pgtest.URL(),
		Pool:              e.pool,
		Mode:              e.mode,
		Table:             e.table,
		SlotName:          e.slot,
		MessagePrefix:     e.prefix,
		StatusInterval:    50 * time.Millisecond,
		ReconnectInterval: 100 * time.Millisecond,
	}
}

func (e *env) source(tb testing.TB, cfg wal.Config) *wal.Source {
	tb.Helper()
	src, err := wal.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return src
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
func startRelay(tb testing.TB, src *wal.Source, sk sink.Sink, rcfg relay.Config) *running {
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

// produce commits keys×perKey messages, perTx per transaction, each payload "key:seq" with a
// per-key sequence starting at from, through the env's mode.
func (e *env) produce(tb testing.TB, keys, from, perKey, perTx int) []outbox.Message {
	tb.Helper()
	var msgs []outbox.Message
	for i := from; i < from+perKey; i++ {
		for k := range keys {
			key := fmt.Sprintf("k%d", k)
			msgs = append(msgs, outbox.Message{Topic: "test.orders", Key: key, Payload: []byte(key + ":" + strconv.Itoa(i))})
		}
	}
	for start := 0; start < len(msgs); start += perTx {
		chunk := msgs[start:min(start+perTx, len(msgs))]
		e.commit(tb, chunk...)
	}
	return msgs
}

// commit enqueues msgs in one transaction through the env's mode.
func (e *env) commit(tb testing.TB, msgs ...outbox.Message) {
	tb.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error { return e.enqueue(ctx, tx, msgs...) })
	if err != nil {
		tb.Fatal(err)
	}
}

func (e *env) enqueue(ctx context.Context, tx pgx.Tx, msgs ...outbox.Message) error {
	if e.mode == wal.ModeLogical {
		return e.logical.Enqueue(ctx, tx, msgs...)
	}
	return e.writer.Enqueue(ctx, tx, msgs...)
}

func (e *env) rows(tb testing.TB) int {
	tb.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+e.table).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

func (e *env) confirmedLSN(tb testing.TB) string {
	tb.Helper()
	var lsn *string
	err := e.pool.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, e.slot).Scan(&lsn)
	if err != nil || lsn == nil {
		tb.Fatalf("slot position: %v", err)
	}
	return *lsn
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
		if len(m) >= len(prefix) && m[:len(prefix)] == prefix {
			return true
		}
	}
	return false
}

var modes = []wal.Mode{wal.ModeTable, wal.ModeLogical}
