package relaytest

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxgo/outbox/relay"
)

// Running is a relay started by Start.
type Running struct {
	// Relay is the running relay.
	Relay *relay.Relay
	// Done is closed when the relay's Run returned.
	Done    <-chan struct{}
	stop    func() error
	stopped atomic.Bool // Stop was called: the caller has Run's error
}

// Stop cancels the relay's context and waits for Run to return (a minute at most: past it,
// the test fails); it returns Run's error. Later calls return the same.
func (r *Running) Stop() error {
	r.stopped.Store(true)
	return r.stop()
}

// Start creates a relay of cfg (Source and Sink set) and runs it until the test ends or Stop
// is called. Unset fields get test values: BackoffBase 5ms and BackoffMax 50ms (both, when
// BackoffBase is unset), and a Logger that discards (pass one to see the relay's log).
// relay.New's error fails the test, and so does an error of Run unless the test called Stop,
// which returns it.
func Start(tb testing.TB, cfg relay.Config) *Running {
	tb.Helper()
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase, cfg.BackoffMax = 5*time.Millisecond, 50*time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r, err := relay.New(cfg)
	if err != nil {
		tb.Fatalf("relay.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		err := r.Run(ctx)
		close(done) // before Stop can return: Stop waits for errc
		errc <- err
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
			case <-time.After(time.Minute):
				runErr = errors.New("relaytest: the relay did not stop within a minute")
				tb.Error(runErr)
			}
		})
		return runErr
	}
	rn := &Running{Relay: r, Done: done, stop: stop}
	tb.Cleanup(func() {
		if err := stop(); err != nil && !rn.stopped.Load() {
			tb.Errorf("relay.Run: %v", err)
		}
	})
	return rn
}

// WaitFor checks cond until it holds, and fails the test when it still does not after d;
// what names the wait in the failure. It looks again after a millisecond, the pause doubling
// up to 10ms: a condition that holds soon is seen at once, and one that queries a database
// does not query it a thousand times a second.
func WaitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for pause := time.Millisecond; !cond(); pause = min(2*pause, 10*time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(pause)
	}
}
