package integration_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/relay/relaytest"
)

// faultSink acknowledges every message of its first faultWave-1 waves, remembering which
// wave acknowledged which message; at wave faultWave it calls fault, then hangs until its
// context ends, acknowledging nothing more: the relay is dead from then on.
type faultSink struct {
	faultWave int
	fault     func()

	mu     sync.Mutex
	waves  int
	waveOf map[string]int // message id → the wave that acknowledged it
	acked  []outbox.Record
}

func (s *faultSink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	s.mu.Lock()
	s.waves++
	wave := s.waves
	s.mu.Unlock()
	if wave >= s.faultWave {
		if wave == s.faultWave {
			s.fault()
		}
		<-ctx.Done()
		errs := make([]error, len(msgs))
		for i := range errs {
			errs[i] = ctx.Err()
		}
		return errs
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.waveOf[m.ID.String()] = wave
		s.acked = append(s.acked, *m)
	}
	return make([]error, len(msgs))
}

func (s *faultSink) Close() error { return nil }

// A relay killed in the middle of a long batch (its database sessions terminated, its memory
// gone) does not leave the waves it had acknowledged to be published again: the batch
// checkpointed them as it went. Only the wave it was publishing comes again.
func TestKilledMidBatchRepublishesOnlyTheWaveInFlight(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const keys, perKey, faultWave = 2, 20, 8
	n := produce(t, b, keys, perKey, keys*perKey) // one batch of 20 waves of 2 messages
	killed := make(chan struct{})
	first := &faultSink{faultWave: faultWave, waveOf: map[string]int{}, fault: func() {
		// As a kill -9 of the relay: its claim's transaction dies with its sessions.
		if _, err := b.pool.Exec(context.Background(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE application_name = $1 AND pid <> pg_backend_pid() AND xact_start IS NOT NULL`, appName(t, b)); err != nil {
			t.Errorf("terminating the relay's sessions: %v", err)
		}
		close(killed)
	}}
	stop := startRelay(t, b, first, poll.Config{Workers: 1}, relay.Config{ShutdownTimeout: 50 * time.Millisecond})
	select {
	case <-killed:
	case <-time.After(30 * time.Second):
		t.Fatal("the fault wave never came")
	}
	stop() // the rest of the relay's memory goes with it (no remembered outcomes)

	second := relaytest.NewSink()
	startRelay(t, b, second, poll.Config{Workers: 1}, relay.Config{})
	waitFor(t, 30*time.Second, "every message and an empty outbox", func() bool {
		seen := map[string]bool{}
		for _, r := range first.acked {
			seen[r.ID.String()] = true
		}
		for _, r := range second.Acked() {
			seen[r.ID.String()] = true
		}
		return len(seen) == n && pending(t, b) == 0
	})
	again := map[int]int{} // wave of the first relay → its messages published again
	for _, r := range second.Acked() {
		if w, ok := first.waveOf[r.ID.String()]; ok {
			again[w]++
		}
	}
	for w, c := range again {
		t.Errorf("%d messages of wave %d (checkpointed before the fault) were published again", c, w)
	}
	checkOrder(t, append(append([]outbox.Record(nil), first.acked...), second.Acked()...))
}
