package inbox

import (
	"context"
	"fmt"
	"time"

	"github.com/outboxgo/outbox"
)

// Hook is a hook into the inbox's work, for metrics and tracing: any value, which the inbox
// calls through each of the hook interfaces below that it implements (HookDelivered,
// HookDeliver).
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

// HookDeliver is a Hook that wraps every delivery (tracing): BeforeDeliver is called before
// Deliver, DeliverBatch or DeliverBulk handles d, and returns the context the handler runs
// with (for one delivery at a time; a bulk handler gets the batch's) and a function, called
// with the delivery's outcome when it was handled (o is zero when err is set).
type HookDeliver interface {
	BeforeDeliver(ctx context.Context, consumer string, d *Delivery) (context.Context, func(o *Outcome, err error))
}

type hooks struct {
	onDelivered []HookDelivered
	onDeliver   []HookDeliver
}

// newHooks sorts hs by the interfaces they implement; it refuses a nil hook and one that
// implements none (a misspelt method would otherwise be ignored silently).
func newHooks(hs []Hook) (hooks, error) {
	var h hooks
	for i, hk := range hs {
		known := false
		if f, ok := hk.(HookDelivered); ok {
			h.onDelivered, known = append(h.onDelivered, f), true
		}
		if f, ok := hk.(HookDeliver); ok {
			h.onDeliver, known = append(h.onDeliver, f), true
		}
		if !known {
			return hooks{}, &outbox.ConfigError{Field: fmt.Sprintf("hooks[%d]", i),
				Reason: fmt.Sprintf("%T implements no hook interface (inbox.HookDelivered, inbox.HookDeliver)", hk)}
		}
	}
	return h, nil
}

// before calls the HookDeliver hooks for ds: the contexts their handlers run with (nil when
// no hook), and the function that reports the outcomes to them.
func (in *Inbox) before(ctx context.Context, ds []Delivery) ([]context.Context, func([]Outcome, error)) {
	if len(in.hooks.onDeliver) == 0 {
		return nil, func([]Outcome, error) {}
	}
	ctxs := make([]context.Context, len(ds))
	afters := make([][]func(*Outcome, error), len(ds))
	for i := range ds {
		ctxs[i], afters[i] = in.beforeOne(ctx, &ds[i]) //nolint:fatcontext // each from ctx, not nested
	}
	return ctxs, func(out []Outcome, err error) {
		var zero Outcome
		for i := range ds {
			o := &zero
			if err == nil && i < len(out) {
				o = &out[i]
			}
			for _, after := range afters[i] {
				after(o, err)
			}
		}
	}
}

// beforeOne calls the HookDeliver hooks for d, each with the context the previous returned.
func (in *Inbox) beforeOne(ctx context.Context, d *Delivery) (context.Context, []func(*Outcome, error)) {
	var afters []func(*Outcome, error)
	for _, h := range in.hooks.onDeliver {
		var after func(*Outcome, error)
		ctx, after = h.BeforeDeliver(ctx, in.cfg.Consumer, d) //nolint:fatcontext // hooks wrap each other: nesting is the point
		if after != nil {
			afters = append(afters, after)
		}
	}
	return ctx, afters
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
