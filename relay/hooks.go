package relay

import (
	"fmt"
	"time"

	"github.com/outboxgo/outbox"
)

// Hook is a hook into the relay's work, for metrics, tracing and tests: any value, which the
// relay calls through each of the hook interfaces below that it implements
// (HookBatchFinished, HookPublished). New interfaces join them as the relay learns to report more, without breaking the
// hooks that exist: a hook implements only what it cares about. Hooks are called from the
// relay's workers, concurrently: they must be safe for concurrent use, and quick.
type Hook any

// HookBatchFinished is a Hook told about every batch after the relay finished it: recs are the
// batch's records, o the outcome the relay decided (what it handed to Batch.Finish), err what
// Finish returned (nil: the outcome was recorded; else the relay remembers the outcome and
// applies it when the messages come back). recs and o must not be kept or changed.
type HookBatchFinished interface {
	OnBatchFinished(recs []outbox.Record, o outbox.Outcome, err error)
}

// HookPublished is a Hook told about every Publish call, after it returned: one wave of a
// batch (at most one message per key). p and what it points to must not be kept or changed.
type HookPublished interface {
	OnPublished(p *Published)
}

// Published describes one Publish call.
type Published struct {
	// Records are the messages sent, in the order the sink received them.
	Records []*outbox.Record
	// Destinations name, per record, the destination it went to: a route's sink name, or
	// Config.SinkName.
	Destinations []string
	// Results are the sink's results, per record: nil when acknowledged, an error matching
	// sink.ErrDuplicate when the broker held it already, else why it failed.
	Results []error
	// Start is when the call began, Duration how long it took.
	Start    time.Time
	Duration time.Duration
}

// hooks are Config.Hooks sorted by interface.
type hooks struct {
	onBatchFinished []HookBatchFinished
	onPublished     []HookPublished
}

// newHooks sorts hs by the interfaces they implement; it refuses a nil hook and one that
// implements none (a misspelt method would otherwise be ignored silently).
func newHooks(hs []Hook) (hooks, error) {
	var h hooks
	for i, hk := range hs {
		known := false
		if f, ok := hk.(HookBatchFinished); ok {
			h.onBatchFinished = append(h.onBatchFinished, f)
			known = true
		}
		if f, ok := hk.(HookPublished); ok {
			h.onPublished = append(h.onPublished, f)
			known = true
		}
		if !known {
			return hooks{}, &outbox.ConfigError{Field: fmt.Sprintf("hooks[%d]", i),
				Reason: fmt.Sprintf("%T implements no hook interface (relay.HookBatchFinished, relay.HookPublished)", hk)}
		}
	}
	return h, nil
}

func (h *hooks) batchFinished(recs []outbox.Record, o outbox.Outcome, err error) {
	for _, f := range h.onBatchFinished {
		f.OnBatchFinished(recs, o, err)
	}
}

func (h *hooks) published(p *Published) {
	for _, f := range h.onPublished {
		f.OnPublished(p)
	}
}
