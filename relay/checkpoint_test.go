package relay_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/relaytest"
)

// checkpointSource gives relaytest's batches a Checkpoint that records what it was given and
// fails from call failFrom on (0: never).
type checkpointSource struct {
	*relaytest.Source
	failFrom int

	mu    sync.Mutex
	calls [][]int64
}

func (s *checkpointSource) Next(ctx context.Context) (relay.Batch, error) {
	b, err := s.Source.Next(ctx)
	if err != nil {
		return nil, err
	}
	return &checkpointBatch{Batch: b, src: s}, nil
}

func (s *checkpointSource) checkpoints() [][]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

type checkpointBatch struct {
	relay.Batch
	src *checkpointSource
}

func (b *checkpointBatch) Checkpoint(_ context.Context, o outbox.Outcome) error {
	s := b.src
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(o.Retry)+len(o.Dead) > 0 {
		return errors.New("a checkpoint with retries or dead letters")
	}
	s.calls = append(s.calls, slices.Clone(o.Published))
	if s.failFrom > 0 && len(s.calls) >= s.failFrom {
		return errors.New("claim lost")
	}
	return nil
}

// Each wave's acknowledged messages are checkpointed before the next wave goes out, never the
// last wave's (Finish records it), and Finish still gets the whole outcome.
func TestCheckpointsEachWave(t *testing.T) {
	t.Parallel()
	src := &checkpointSource{Source: relaytest.NewSource(relaytest.SourceConfig{})}
	sk := relaytest.NewSink()
	src.Enqueue(relaytest.Messages(3, 0, 4)...)
	batches := &batchLog{sink: sk}
	run(t, src, sk, relay.Config{Workers: 1, Hooks: []relay.Hook{batches}})
	relaytest.WaitFor(t, 10*time.Second, "every message", func() bool { return src.Stats().Pending == 0 })

	calls, cps := sk.Calls(), src.checkpoints()
	if len(calls) != 4 || len(cps) != 3 {
		t.Fatalf("%d waves and %d checkpoints, want 4 and 3 (one batch)", len(calls), len(cps))
	}
	for i, cp := range cps {
		var wave []int64
		for _, r := range calls[i].Records {
			wave = append(wave, r.Seq)
		}
		if !slices.Equal(cp, wave) {
			t.Errorf("checkpoint %d = %v, want wave %d's %v", i+1, cp, i+1, wave)
		}
	}
	if f := batches.get(); len(f) != 1 || len(f[0].outcome.Published) != 12 || f[0].err != nil {
		t.Fatalf("batches %+v, want one finished with all 12 published", f)
	}
	relaytest.CheckOrder(t, sk.Acked())
}

// A failed checkpoint (the claim lost) ends the batch: nothing more of it is published, and
// Finish gets what was acknowledged.
func TestFailedCheckpointEndsBatch(t *testing.T) {
	t.Parallel()
	src := &checkpointSource{Source: relaytest.NewSource(relaytest.SourceConfig{}), failFrom: 1}
	sk := relaytest.NewSink()
	src.Enqueue(relaytest.Messages(3, 0, 4)...)
	batches := &batchLog{sink: sk}
	run(t, src, sk, relay.Config{Workers: 1, Hooks: []relay.Hook{batches}})
	relaytest.WaitFor(t, 10*time.Second, "every message", func() bool { return src.Stats().Pending == 0 })

	first := batches.get()[0]
	if first.calls != 1 || len(first.outcome.Published) != 3 {
		t.Fatalf("the first batch took %d waves and published %d, want 1 wave (the failed checkpoint's) and 3",
			first.calls, len(first.outcome.Published))
	}
	relaytest.CheckOrder(t, sk.Acked())
}
