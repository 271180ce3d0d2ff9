package relay

import (
	"fmt"

	"github.com/outboxgo/outbox"
)

// Hook is a hook into the relay's work, for metrics, tracing and tests: any value, which the
// relay calls through each of the hook interfaces below that it implements (HookBatchFinished
// today). New interfaces join them as the relay learns to report more, without breaking the
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

// hooks are Config.Hooks sorted by interface.
type hooks struct {
	onBatchFinished []HookBatchFinished
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
		if !known {
			return hooks{}, &outbox.ConfigError{Field: fmt.Sprintf("hooks[%d]", i),
				Reason: fmt.Sprintf("%T implements no hook interface (relay.HookBatchFinished, ...)", hk)}
		}
	}
	return h, nil
}

func (h *hooks) batchFinished(recs []outbox.Record, o outbox.Outcome, err error) {
	for _, f := range h.onBatchFinished {
		f.OnBatchFinished(recs, o, err)
	}
}
