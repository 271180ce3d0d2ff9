// Package sourcetest holds what the tests of the log-tailing sources (relay/wal, relay/binlog)
// share: a relay running over a source until the test ends, a recording sink, per-key order
// checks of what it (or a JetStream stream) received, and the benchmark workloads (drain a
// backlog, steady commit→PubAck latency) with their metrics. The order checks, Messages and
// WaitFor are relay/relaytest's, the loggers internal/testutil/logtest's.
//
// Producers write payloads "key:seq", seq counting from 0 per key: the order checks read them.
package sourcetest

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/relaytest"
	"github.com/outboxgo/outbox/sink"
)

// Shared with relay/relaytest (see there).
var (
	// Messages builds keys×perKey messages ("k0", "k1"... topic "test.orders"), payload
	// "key:seq" with a per-key sequence from from, in sequence order.
	Messages = relaytest.Messages
	// WaitFor polls cond until it holds, failing the test after d.
	WaitFor = relaytest.WaitFor
	// CheckOrder verifies that, per key, first deliveries arrive in sequence order, and
	// returns the number of duplicates.
	CheckOrder = relaytest.CheckOrder
)

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
type Running = relaytest.Running

// StartRelay runs a relay over src until the test ends (or Stop is called). Unset Logger and
// backoff in rcfg get test values: the test's log (info level), 5ms to 50ms. The relay's Run
// may end with an error (a source the test crashed): only Stop reports it.
func StartRelay(tb testing.TB, src relay.Source, sk sink.Sink, rcfg relay.Config) *Running {
	tb.Helper()
	rcfg.Source, rcfg.Sink = src, sk
	if rcfg.Logger == nil {
		rcfg.Logger = logtest.NewLevel(tb, slog.LevelInfo)
	}
	r := relaytest.Start(tb, rcfg)
	tb.Cleanup(func() { _ = r.Stop() }) // runs before relaytest's cleanup, which then leaves Run's error alone
	return r
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
