// Package sourcetest holds what the tests of the log-tailing sources (relay/wal, relay/binlog)
// share: a relay running over a source until the test ends, a recording sink, per-key order
// checks of what it (or a JetStream stream) received, log capture, and the benchmark
// workloads (drain a backlog, steady commit→PubAck latency) with their metrics.
//
// Producers write payloads "key:seq", seq counting from 0 per key: the order checks read them.
package sourcetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/sink"
)

// Logger logs to the test's log, debug level and up.
func Logger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// QuietLogger discards everything.
func QuietLogger() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

// testWriter sends log lines to the test's log.
type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Helper()
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// MustNew returns the source newSource makes of cfg, failing the test on an error.
func MustNew[C, S any](tb testing.TB, newSource func(C) (S, error), cfg C) S {
	tb.Helper()
	src, err := newSource(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return src
}

// Running is a relay started by StartRelay.
type Running struct {
	// Done is closed when the relay's Run returned.
	Done <-chan struct{}
	stop func() error
}

// Stop cancels the relay and waits for it (60s at most); it returns Run's error.
func (r *Running) Stop() error { return r.stop() }

// StartRelay runs a relay over src until the test ends (or Stop is called). Unset Logger and
// backoff in rcfg get test values: the test's log (info level), 5ms to 50ms.
func StartRelay(tb testing.TB, src relay.Source, sk sink.Sink, rcfg relay.Config) *Running {
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
	return &Running{Done: done, stop: stop}
}

// Messages builds keys×perKey messages ("k0", "k1"... topic "test.orders"), payload "key:seq"
// with a per-key sequence from from, in sequence order.
func Messages(keys, from, perKey int) []outbox.Message {
	var out []outbox.Message
	for i := from; i < from+perKey; i++ {
		for k := range keys {
			key := "k" + strconv.Itoa(k)
			out = append(out, outbox.Message{Topic: "test.orders", Key: key, Payload: []byte(key + ":" + strconv.Itoa(i))})
		}
	}
	return out
}

// Produce commits the Messages(keys, from, perKey), perTx per transaction, with commit (one
// call a transaction), and returns them.
func Produce(tb testing.TB, keys, from, perKey, perTx int, commit func(tb testing.TB, msgs ...outbox.Message)) []outbox.Message {
	tb.Helper()
	msgs := Messages(keys, from, perKey)
	for start := 0; start < len(msgs); start += perTx {
		commit(tb, msgs[start:min(start+perTx, len(msgs))]...)
	}
	return msgs
}

// Sink records deliveries and can fail chosen messages or stall.
type Sink struct {
	// Fail, when set, decides each message's outcome (set it before the relay starts, or
	// with SetFail).
	Fail func(r *outbox.Record) error
	// Delay holds every Publish call that long (nanoseconds).
	Delay atomic.Int64
	// Gate, when set, holds every Publish call until it is closed.
	Gate chan struct{}
	// Calls counts the Publish calls started.
	Calls atomic.Int64

	mu        sync.Mutex
	delivered []outbox.Record
	count     map[string]int
}

// NewSink returns an empty recording sink.
func NewSink() *Sink { return &Sink{count: map[string]int{}} }

// Publish implements sink.Sink.
func (s *Sink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	s.Calls.Add(1)
	res := make([]error, len(msgs))
	if s.Gate != nil {
		select {
		case <-s.Gate:
		case <-ctx.Done():
			return sink.FailAll(len(msgs), ctx.Err())
		}
	}
	if d := time.Duration(s.Delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return sink.FailAll(len(msgs), ctx.Err())
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range msgs {
		if s.Fail != nil {
			if err := s.Fail(m); err != nil {
				res[i] = err
				continue
			}
		}
		s.delivered = append(s.delivered, *m)
		s.count[m.ID.String()]++
	}
	return res
}

// Close implements sink.Sink.
func (s *Sink) Close() error { return nil }

// Snapshot returns the deliveries so far, in order, and how often each message id was
// delivered.
func (s *Sink) Snapshot() ([]outbox.Record, map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]outbox.Record(nil), s.delivered...), maps.Clone(s.count)
}

// Unique is the number of distinct messages delivered.
func (s *Sink) Unique() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.count)
}

// SetFail replaces Fail while the relay runs.
func (s *Sink) SetFail(f func(r *outbox.Record) error) {
	s.mu.Lock()
	s.Fail = f
	s.mu.Unlock()
}

// WaitFor polls cond until it holds, failing the test after d.
func WaitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// CheckOrder verifies that, per key, first deliveries arrive in sequence order, and returns
// the number of duplicates.
func CheckOrder(tb testing.TB, delivered []outbox.Record) (dups int) {
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

// parse splits a payload "key:seq".
func parse(p string) (string, int) {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == ':' {
			n, _ := strconv.Atoi(p[i+1:])
			return p[:i], n
		}
	}
	return p, -1
}

// LogRecorder is a slog.Handler that captures records ("LEVEL message key=value ...") for
// assertions.
type LogRecorder struct {
	mu   sync.Mutex
	msgs []string
}

// Enabled implements slog.Handler.
func (l *LogRecorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (l *LogRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	b.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.msgs = append(l.msgs, b.String())
	return nil
}

// WithAttrs implements slog.Handler.
func (l *LogRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }

// WithGroup implements slog.Handler.
func (l *LogRecorder) WithGroup(string) slog.Handler { return l }

// Has reports whether a record starting with prefix ("WARN the outbox") was logged.
func (l *LogRecorder) Has(prefix string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range l.msgs {
		if strings.HasPrefix(m, prefix) {
			return true
		}
	}
	return false
}

// Msgs returns the records logged so far.
func (l *LogRecorder) Msgs() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.msgs...)
}
