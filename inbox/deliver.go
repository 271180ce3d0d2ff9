package inbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox"
)

// Delivery is one delivery of a message by a broker, as an adapter hands it to Deliver.
type Delivery struct {
	Message Message
	// Redelivered says the broker may have delivered this message before: JetStream's
	// NumDelivered > 1, AMQP's redelivered flag, a Redis entry claimed from the pending list,
	// MQTT's DUP flag, a Kafka record read before the partition's first commit since it was
	// assigned, or any delivery the adapter cannot tell. Deliver then counts the delivery
	// durably before the handler runs (Attempt), so a handler that crashes the process on it
	// every time is dead-lettered in the end. A first delivery is counted only if it fails:
	// the common case costs no statement of its own.
	Redelivered bool
}

// Outcome is what Deliver did with a delivery, and what the adapter does with the broker's
// message: ack it, or (Retry) have it redelivered after Delay.
type Outcome struct {
	// Result is Applied, Duplicate, Stale or DeadLettered; 0 when Retry.
	Result Result
	// Attempt is the number of deliveries counted for the message (0 when none was).
	Attempt int
	// Retry says the handler failed with Err: roll back was done and the failure recorded;
	// the adapter has the message redelivered after Delay (a nak with delay, or a retry in
	// place for brokers that must keep a partition's order).
	Retry bool
	Delay time.Duration
	Err   error
}

// ErrKeyBlocked is the Err of a Retry outcome given, without running the handler, to a
// message whose key has an earlier message awaiting its retry: it is redelivered with it,
// so that a key's messages are applied in order; its delivery does not count toward
// MaxAttempts. An adapter that holds such messages back itself hands them back to the broker
// without calling Deliver, so that they are not counted either.
var ErrKeyBlocked = errors.New("inbox: an earlier message of the key awaits its retry")

// DeadLettered is the Result of a delivery after MaxAttempts: the message was moved to the
// dead letters; ack it.
const DeadLettered Result = Stale + 1

// DefaultBackoff is the default Config.Backoff: 1 s after the first failed delivery,
// doubling up to 5 minutes.
func DefaultBackoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	if attempt > 9 {
		return 5 * time.Minute
	}
	return min(time.Second<<(attempt-1), 5*time.Minute)
}

// handlerError marks an error as the handler's, as opposed to the inbox's or the database's.
type handlerError struct{ err error }

func (e *handlerError) Error() string { return e.err.Error() }
func (e *handlerError) Unwrap() error { return e.err }

func wrapHandler(h Handler) Handler {
	return func(ctx context.Context, tx outbox.Tx, msg Message) error {
		if err := h(ctx, tx, msg); err != nil {
			return &handlerError{err}
		}
		return nil
	}
}

func wrapBulk(h BulkHandler) BulkHandler {
	return func(ctx context.Context, tx outbox.Tx, msgs []Message) error {
		if err := h(ctx, tx, msgs); err != nil {
			return &handlerError{err}
		}
		return nil
	}
}

// Deliver processes one delivery in a transaction of its own on Config.Pool or Config.DB:
// Attempt when the delivery is Redelivered, then Process with handler, then commit. The
// handler's effects therefore go to the inbox's database; use Process with your own
// transaction to write elsewhere.
//
// The returned Outcome says whether to ack (Applied, Duplicate, Stale, DeadLettered) or to
// have the message redelivered (Retry: the handler failed). An error means the inbox could
// not do its part (the database is unreachable, the commit failed, ctx ended): neither ack
// nor count it; have the message redelivered after a pause. A commit whose result is unknown
// is reported as an error, and its redelivery will be a Duplicate if it had committed.
func (in *Inbox) Deliver(ctx context.Context, d Delivery, handler Handler) (Outcome, error) {
	start := time.Now()
	hctx := ctx
	var after func([]Outcome, error)
	if len(in.hooks.onDeliver) > 0 {
		var ctxs []context.Context
		ctxs, after = in.before(ctx, []Delivery{d})
		hctx = ctxs[0]
	}
	o, err := in.deliverOne(hctx, d, handler)
	if after != nil {
		after([]Outcome{o}, err)
	}
	if len(in.hooks.onDelivered) > 0 {
		in.delivered([]Delivery{d}, []Outcome{o}, err, start)
	}
	return o, err
}

// withContexts makes handler run message ds[i] with ctxs[i] (the hooks' contexts), found by
// message id; nil ctxs leave it as it is.
func withContexts(ds []Delivery, ctxs []context.Context, handler Handler) Handler {
	if ctxs == nil {
		return handler
	}
	byID := make(map[string]context.Context, len(ds))
	for i := range ds {
		byID[ds[i].Message.ID] = ctxs[i] //nolint:fatcontext // one context per delivery, not nested
	}
	return func(ctx context.Context, tx outbox.Tx, msg Message) error {
		if c, ok := byID[msg.ID]; ok {
			ctx = c
		}
		return handler(ctx, tx, msg)
	}
}

func (in *Inbox) deliverOne(ctx context.Context, d Delivery, handler Handler) (Outcome, error) {
	if h, ok := in.db.(pgxHandle); ok {
		return in.deliverPipelined(ctx, h, d, handler)
	}
	attempt := 0
	if d.Redelivered {
		n, err := in.Attempt(ctx, d.Message)
		switch {
		case errors.Is(err, ErrDeadLettered):
			return Outcome{Result: DeadLettered, Attempt: n}, nil
		case err != nil:
			return Outcome{}, err
		case n == 0:
			return Outcome{Result: Duplicate}, nil
		}
		attempt = n
	}
	return in.deliver(ctx, d.Message, attempt, handler)
}

// deliver runs Process in a transaction of its own; attempt is the count Attempt returned
// (0 when it was not called).
func (in *Inbox) deliver(ctx context.Context, msg Message, attempt int, handler Handler) (Outcome, error) {
	var res Result
	err := in.db.inTxOf(ctx, func(tx outbox.Tx, r runner) error {
		var err error
		res, err = in.process(ctx, r, tx, msg, attempt > 0, wrapHandler(handler))
		return err
	})
	var herr *handlerError
	switch {
	case errors.As(err, &herr):
		return in.failed(ctx, msg, attempt, herr.err)
	case err != nil:
		return Outcome{}, err
	}
	return Outcome{Result: res, Attempt: attempt}, nil
}

// errSkip rolls back a delivery's transaction whose message is not to be applied.
var errSkip = errors.New("inbox: not applied")

// deliverPipelined is Deliver on a pgx pool. One round trip carries the redelivery's count
// (Attempt's transaction, committed first), the BEGIN of the delivery's transaction and the
// insert of the id; then the handler runs, and the commit. So the inbox adds no round trip to
// the consumer's transaction, redelivered or not.
func (in *Inbox) deliverPipelined(ctx context.Context, h pgxHandle, d Delivery, handler Handler) (Outcome, error) {
	msg := d.Message
	if err := msg.validate(); err != nil {
		return Outcome{}, err
	}
	now := time.Now()
	var (
		a     attemptRow
		fresh bool
		res   Result
	)
	err := h.inTxFirst(ctx, "delivering "+msg.ID, func(b *pgx.Batch) {
		if d.Redelivered {
			in.queueAttempt(b, msg, now, &a)
			b.Queue("begin") // the transaction pgx began, from here on
		}
		in.queueRecord(b, msg, d.Redelivered, now, &fresh)
	}, func(tx outbox.Tx, r runner) error {
		if a.seen || a.attempt > in.cfg.MaxAttempts {
			return errSkip
		}
		var err error
		res, err = in.recorded(ctx, r, tx, msg, fresh, now, wrapHandler(handler))
		return err
	})
	var herr *handlerError
	switch {
	case errors.Is(err, errSkip) && a.seen:
		return Outcome{Result: Duplicate}, nil
	case errors.Is(err, errSkip):
		n, err := in.afterAttempt(ctx, msg, a)
		if errors.Is(err, ErrDeadLettered) {
			return Outcome{Result: DeadLettered, Attempt: n}, nil
		}
		return Outcome{}, err
	case errors.As(err, &herr):
		return in.failed(ctx, msg, a.attempt, herr.err)
	case err != nil:
		return Outcome{}, err
	}
	return Outcome{Result: res, Attempt: a.attempt}, nil
}

// failed records a handler's failure and returns the Retry outcome.
func (in *Inbox) failed(ctx context.Context, msg Message, attempt int, herr error) (Outcome, error) {
	if ctx.Err() != nil {
		// The handler most likely failed because ctx ended: not the message's fault.
		return Outcome{}, fmt.Errorf("inbox: delivery of %s: %w (handler: %w)", msg.ID, ctx.Err(), herr)
	}
	if err := in.Failed(ctx, msg, herr); err != nil {
		return Outcome{}, err
	}
	attempt = max(attempt, 1)
	return Outcome{Attempt: attempt, Retry: true, Delay: in.cfg.Backoff(attempt), Err: herr}, nil
}

// DeliverBatch processes deliveries in one transaction, so that a consumer pays one commit
// for many messages; each is still applied once. On PostgreSQL the inbox's part of the whole
// batch is one statement. It returns one Outcome per delivery, in
// order. Redelivered deliveries are counted first (Attempt). When a handler fails, the batch
// is rolled back and its deliveries are processed one by one (Deliver), so that only the
// failing one is retried. An error means nothing of the batch was committed by this call
// (except the deliveries already dead-lettered or found processed): have all of them
// redelivered.
//
// Deliveries of one key must be in their order in ds, as they are applied in that order.
func (in *Inbox) DeliverBatch(ctx context.Context, ds []Delivery, handler Handler) ([]Outcome, error) {
	start := time.Now()
	ctxs, after := in.before(ctx, ds)
	handler = withContexts(ds, ctxs, handler)
	out, err := in.deliverBatch(ctx, ds, each(handler), handler)
	after(out, err)
	in.delivered(ds, out, err, start)
	return out, err
}

// DeliverBulk is DeliverBatch with a handler that applies the batch's new messages in one
// call, for consumers whose effects can be written set-wise (one multi-row statement for the
// batch): the fastest way through the inbox. When it fails, the batch is rolled back and
// redone one message at a time, each in a call of handler with that message alone.
func (in *Inbox) DeliverBulk(ctx context.Context, ds []Delivery, handler BulkHandler) ([]Outcome, error) {
	start := time.Now()
	ctxs, after := in.before(ctx, ds)
	one := withContexts(ds, ctxs, func(ctx context.Context, tx outbox.Tx, m Message) error { return handler(ctx, tx, []Message{m}) })
	out, err := in.deliverBatch(ctx, ds, handler, one)
	after(out, err)
	in.delivered(ds, out, err, start)
	return out, err
}

// deliverBatch is DeliverBatch with bulk for the batch and one for its redo one by one.
func (in *Inbox) deliverBatch(ctx context.Context, ds []Delivery, bulk BulkHandler, one Handler) ([]Outcome, error) {
	out := make([]Outcome, len(ds))
	attempts := make([]int, len(ds))
	pending := make([]int, 0, len(ds))
	for i, d := range ds {
		if !d.Redelivered {
			pending = append(pending, i)
			continue
		}
		n, err := in.Attempt(ctx, d.Message)
		switch {
		case errors.Is(err, ErrDeadLettered):
			out[i] = Outcome{Result: DeadLettered, Attempt: n}
		case err != nil:
			return nil, err
		case n == 0:
			out[i] = Outcome{Result: Duplicate}
		default:
			attempts[i] = n
			pending = append(pending, i)
		}
	}
	if len(pending) == 0 {
		return out, nil
	}
	h := wrapBulk(bulk)
	msgs, attempted := make([]Message, len(pending)), make([]bool, len(pending))
	for j, i := range pending {
		msgs[j], attempted[j] = ds[i].Message, attempts[i] > 0
	}
	err := in.db.inTxOf(ctx, func(tx outbox.Tx, r runner) error {
		res, err := in.processBatch(ctx, r, tx, msgs, attempted, h)
		if err != nil {
			return err
		}
		for j, i := range pending {
			out[i] = Outcome{Result: res[j], Attempt: attempts[i]}
		}
		return nil
	})
	var herr *handlerError
	switch {
	case errors.As(err, &herr):
		// One by one; a key's messages after one that failed wait for it (retried with it),
		// so that they are not applied before it.
		failed := make(map[string]time.Duration)
		for _, i := range pending {
			m := ds[i].Message
			if delay, ok := failed[m.Key]; ok && m.Key != "" {
				// Not this message's failure: its delivery is not counted.
				if attempts[i] > 0 {
					if _, err := in.db.exec(ctx, in.q.uncountAttempt, in.cfg.Consumer, m.ID); err != nil {
						return nil, fmt.Errorf("inbox: uncounting the held-back delivery of %s: %w", m.ID, err)
					}
				}
				out[i] = Outcome{Attempt: max(attempts[i]-1, 0), Retry: true, Delay: delay, Err: ErrKeyBlocked}
				continue
			}
			o, err := in.deliver(ctx, m, attempts[i], one)
			if err != nil {
				return nil, err
			}
			if o.Retry {
				failed[m.Key] = o.Delay
			}
			out[i] = o
		}
	case err != nil:
		return nil, err
	}
	return out, nil
}
