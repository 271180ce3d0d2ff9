package inbox

import (
	"fmt"
	"time"

	"github.com/outboxgo/outbox"
)

// Hook is a hook into the inbox's work, for metrics and tracing: any value, which the inbox
// calls through each of the hook interfaces below that it implements (HookDelivered today).
// Hooks are called from the consumer's goroutines, concurrently: they must be safe for
// concurrent use, and quick.
type Hook any

// HookDelivered is a Hook told about every delivery Deliver, DeliverBatch and DeliverBulk
// handled, after it: o is its Outcome (Applied, Duplicate, Stale, DeadLettered, or Retry
// when the handler failed), err the call's error (the inbox could not do its part; o is zero
// then), took how long the call took (the whole batch's, for the batch methods). d and o
// must not be kept or changed.
type HookDelivered interface {
	OnDelivered(consumer string, d *Delivery, o *Outcome, err error, took time.Duration)
}

type hooks struct {
	onDelivered []HookDelivered
}

// newHooks sorts hs by the interfaces they implement; it refuses a nil hook and one that
// implements none (a misspelt method would otherwise be ignored silently).
func newHooks(hs []Hook) (hooks, error) {
	var h hooks
	for i, hk := range hs {
		f, ok := hk.(HookDelivered)
		if !ok {
			return hooks{}, &outbox.ConfigError{Field: fmt.Sprintf("hooks[%d]", i),
				Reason: fmt.Sprintf("%T implements no hook interface (inbox.HookDelivered)", hk)}
		}
		h.onDelivered = append(h.onDelivered, f)
	}
	return h, nil
}

// delivered tells the hooks about ds and their outcomes (nil when err).
func (in *Inbox) delivered(ds []Delivery, out []Outcome, err error, start time.Time) {
	if len(in.hooks.onDelivered) == 0 {
		return
	}
	took := time.Since(start)
	var zero Outcome
	for i := range ds {
		d, o := &ds[i], &zero
		if err == nil && i < len(out) {
			o = &out[i]
		}
		for _, f := range in.hooks.onDelivered {
			f.OnDelivered(in.cfg.Consumer, d, o, err, took)
		}
	}
}
