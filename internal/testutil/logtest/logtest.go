// Package logtest holds the loggers of the repository's tests: New logs into the test's own
// log, Recorder captures records for assertions, Buffer is a log (or a command's output) to
// search while the code under test still writes to it.
//
// It lives under internal/testutil, beside the other test helpers, and not in relay/relaytest:
// the tests of every package (sinks, sources, the command) use it, and relaytest, a public
// package that imports only the standard library, outbox, sink and relay, needs no logger of
// its own (relaytest.Start discards the relay's log unless given a logger, such as New's).
package logtest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// New returns a logger into tb's log, at debug level and up, until the test ends: what the
// code under test logs later (from goroutines that outlive the test, connection callbacks,
// client libraries) is dropped instead of failing the test run.
func New(tb testing.TB) *slog.Logger { return NewLevel(tb, slog.LevelDebug) }

// NewLevel is New from level up.
func NewLevel(tb testing.TB, level slog.Leveler) *slog.Logger {
	w := &tbWriter{tb: tb}
	tb.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// tbWriter sends log lines to the test's log until the test ends.
type tbWriter struct {
	tb   testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// Recorder is a slog.Handler that captures every record, at every level, as a line
// "LEVEL message key=value ..." (attributes of the record; those added with With are not
// kept) for assertions. The zero value is ready; use it as slog.New(rec).
type Recorder struct {
	mu   sync.Mutex
	msgs []string
}

// Enabled implements slog.Handler.
func (r *Recorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements slog.Handler.
func (r *Recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Level.String() + " " + rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, b.String())
	return nil
}

// WithAttrs implements slog.Handler.
func (r *Recorder) WithAttrs([]slog.Attr) slog.Handler { return r }

// WithGroup implements slog.Handler.
func (r *Recorder) WithGroup(string) slog.Handler { return r }

// Has reports whether a record starting with prefix ("WARN the outbox") was logged.
func (r *Recorder) Has(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if strings.HasPrefix(m, prefix) {
			return true
		}
	}
	return false
}

// Msgs returns the records logged so far.
func (r *Recorder) Msgs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}
