package redisinbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/outboxgo/outbox/inbox"
)

// This file is the broker-independent part of the adapter: it keeps a key's messages in
// the order the broker delivered them while one of them awaits its retry, and runs Deliver
// or DeliverBatch over what is ready. The other adapter module (natsinbox, redisinbox) has the
// same file.

// item is one broker message on its way through the adapter.
type item[H any] struct {
	ref      string // the broker's identity of the message, stable across redeliveries
	rejectID string // the id Reject uses when the message has none it can use
	h        H      // the broker's handle (to ack, nak, claim)
	d        inbox.Delivery
	bad      error // why the message does not decode; d.Message holds what could be read
	rejected bool  // Reject committed (a retried batch does not reject it twice)
}

// broker is what the sequencer asks of the broker.
type broker[H any] interface {
	// ack acknowledges items whose outcome committed.
	ack(ctx context.Context, its []*item[H])
	// retry has it redelivered after delay.
	retry(ctx context.Context, it *item[H], delay time.Duration)
}

// blockedKey is a key whose message head awaits its retry; held are the key's later
// messages, in delivery order, kept unacknowledged until head is done.
type blockedKey[H any] struct {
	head string
	due  time.Time
	held []*item[H]
}

func (b *blockedKey[H]) hold(it *item[H]) {
	for i, h := range b.held {
		if h.ref == it.ref { // the broker delivered a held message again: keep the newer handle
			b.held[i] = it
			return
		}
	}
	b.held = append(b.held, it)
}

// sequencer decides which messages are delivered, in which order, and what the broker does
// with them afterwards. It is used by one goroutine.
type sequencer[H any] struct {
	in      *inbox.Inbox
	handler inbox.Handler
	broker  broker[H]
	batch   int
	pause   time.Duration // after an error of the inbox
	grace   time.Duration // how long past its due time a head may take to come back
	log     *slog.Logger

	queue   []*item[H] // arrived (or released), not yet delivered
	blocked map[string]*blockedKey[H]
}

func newSequencer[H any](in *inbox.Inbox, h inbox.Handler, b broker[H], batch int, grace time.Duration, log *slog.Logger) *sequencer[H] {
	return &sequencer[H]{in: in, handler: h, broker: b, batch: max(batch, 1), pause: time.Second, grace: grace,
		log: log, blocked: make(map[string]*blockedKey[H])}
}

// add queues an arrived message.
func (s *sequencer[H]) add(it *item[H]) { s.queue = append(s.queue, it) }

// next takes up to batch messages off the queue that may be delivered now; messages of a
// blocked key (other than the one it waits for) are held instead.
func (s *sequencer[H]) next() []*item[H] {
	var ready []*item[H]
	i := 0
	for ; i < len(s.queue) && len(ready) < s.batch; i++ {
		it := s.queue[i]
		if k := it.d.Message.Key; it.bad == nil && k != "" {
			if b := s.blocked[k]; b != nil && b.head != it.ref {
				b.hold(it)
				continue
			}
		}
		ready = append(ready, it)
	}
	s.queue = append(s.queue[:0:0], s.queue[i:]...)
	return ready
}

// step delivers the next ready messages and settles them with the broker. It returns
// false when nothing was ready, and ctx's error when ctx ended (the messages not settled
// are back in the queue).
func (s *sequencer[H]) step(ctx context.Context) (bool, error) {
	ready := s.next()
	if len(ready) == 0 {
		return false, nil
	}
	for {
		outs, err := s.deliver(ctx, ready)
		if err == nil {
			s.settle(ctx, ready, outs)
			return true, nil
		}
		if ctx.Err() != nil {
			s.queue = append(ready, s.queue...)
			return true, ctx.Err()
		}
		// The inbox could not do its part: nothing is acked or counted; try the same
		// messages again after a pause (they stay unacknowledged meanwhile, in order).
		s.log.WarnContext(ctx, "inbox delivery failed; retrying", "consumer", s.in.Consumer(), "messages", len(ready),
			"pause", s.pause, "error", err)
		select {
		case <-ctx.Done():
			s.queue = append(ready, s.queue...)
			return true, ctx.Err()
		case <-time.After(s.pause):
		}
	}
}

// deliver rejects the messages that do not decode and runs Deliver (DeliverBatch for
// several) on the others.
func (s *sequencer[H]) deliver(ctx context.Context, ready []*item[H]) ([]inbox.Outcome, error) {
	outs := make([]inbox.Outcome, len(ready))
	ds := make([]inbox.Delivery, 0, len(ready))
	idx := make([]int, 0, len(ready))
	for i, it := range ready {
		if it.bad == nil {
			ds = append(ds, it.d)
			idx = append(idx, i)
			continue
		}
		if !it.rejected {
			if err := s.reject(ctx, it); err != nil {
				return nil, err
			}
			it.rejected = true
		}
		outs[i] = inbox.Outcome{Result: inbox.DeadLettered}
	}
	switch len(ds) {
	case 0:
	case 1:
		o, err := s.in.Deliver(ctx, ds[0], s.handler)
		if err != nil {
			return nil, err
		}
		outs[idx[0]] = o
	default:
		os, err := s.in.DeliverBatch(ctx, ds, s.handler)
		if err != nil {
			return nil, err
		}
		for j, o := range os {
			outs[idx[j]] = o
		}
	}
	return outs, nil
}

// reject records a message that does not decode in the dead letters, under its own id when
// the inbox can store it, else under the broker's.
func (s *sequencer[H]) reject(ctx context.Context, it *item[H]) error {
	m := it.d.Message
	s.log.WarnContext(ctx, "inbox: undecodable message rejected to the dead letters", "consumer", s.in.Consumer(),
		"message", it.rejectID, "message_id", m.ID, "reason", it.bad)
	if m.ID == "" {
		m.ID = it.rejectID
	}
	err := s.in.Reject(ctx, m, it.bad)
	if errors.Is(err, inbox.ErrInvalidMessage) {
		// Its id or key cannot be stored: record it under the broker's id, keyless.
		m.ID, m.Key, m.Position = it.rejectID, "", 0
		err = s.in.Reject(ctx, m, fmt.Errorf("%w (id %.64q, key %.64q)", it.bad, it.d.Message.ID, it.d.Message.Key))
	}
	return err
}

// settle acks what committed, has failed messages redelivered after their delay, and
// keeps the order of their keys.
func (s *sequencer[H]) settle(ctx context.Context, ready []*item[H], outs []inbox.Outcome) {
	acks := make([]*item[H], 0, len(ready))
	for i, it := range ready {
		o, k := outs[i], it.d.Message.Key
		if it.bad != nil {
			k = ""
		}
		switch {
		case !o.Retry:
			acks = append(acks, it)
			if b := s.blocked[k]; b != nil && b.head == it.ref {
				s.release(k)
			}
		case k != "" && errors.Is(o.Err, inbox.ErrKeyBlocked) && s.blocked[k] != nil:
			s.blocked[k].hold(it)
		default:
			s.broker.retry(ctx, it, o.Delay)
			if k != "" {
				b := s.blocked[k]
				if b == nil {
					b = &blockedKey[H]{}
					s.blocked[k] = b
				}
				b.head, b.due = it.ref, time.Now().Add(o.Delay)
			}
		}
	}
	if len(acks) > 0 {
		s.broker.ack(ctx, acks)
	}
}

// release unblocks key k: its held messages go first in the queue.
func (s *sequencer[H]) release(k string) {
	b := s.blocked[k]
	if b == nil {
		return
	}
	delete(s.blocked, k)
	if len(b.held) > 0 {
		s.queue = append(b.held, s.queue...)
	}
}

// expire releases the keys whose head is overdue by more than grace, and returns when the
// next one would be (zero when no key is blocked).
func (s *sequencer[H]) expire(ctx context.Context, now time.Time) time.Time {
	var next time.Time
	for k, b := range s.blocked {
		deadline := b.due.Add(s.grace)
		if !now.Before(deadline) {
			s.log.WarnContext(ctx, "inbox: a retried message did not come back; releasing its key's later messages",
				"consumer", s.in.Consumer(), "message", b.head, "held", len(b.held))
			s.release(k)
			continue
		}
		if next.IsZero() || deadline.Before(next) {
			next = deadline
		}
	}
	return next
}
