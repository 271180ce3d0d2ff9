// Package keyorder is the broker-independent part of the inbox adapters that take a stream
// of messages (natsinbox, redisinbox): it keeps a key's messages in the order the broker
// delivered them while one of them awaits its retry, and runs Deliver or DeliverBatch over
// what is ready.
package keyorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
)

// item is one broker message on its way through the adapter.
type Item[H any] struct {
	Ref      string // the broker's identity of the message, stable across redeliveries
	RejectID string // the id Reject uses when the message has none it can use
	Handle   H      // the broker's handle (to ack, nak, claim)
	Delivery inbox.Delivery
	Bad      error // why the message does not decode; Delivery.Message holds what could be read
	Rejected bool  // Reject committed (a retried batch does not reject it twice)
}

// broker is what the sequencer asks of the broker.
type Broker[H any] interface {
	// ack acknowledges items whose outcome committed.
	Ack(ctx context.Context, its []*Item[H])
	// retry has it redelivered after delay.
	Retry(ctx context.Context, it *Item[H], delay time.Duration)
}

// blockedKey is a key whose message head awaits its retry; held are the key's later
// messages, in delivery order, kept unacknowledged until head is done.
type blockedKey[H any] struct {
	head string
	due  time.Time
	held []*Item[H]
}

func (b *blockedKey[H]) hold(it *Item[H]) {
	for i, h := range b.held {
		if h.Ref == it.Ref { // the broker delivered a held message again: keep the newer handle
			b.held[i] = it
			return
		}
	}
	b.held = append(b.held, it)
}

// sequencer decides which messages are delivered, in which order, and what the broker does
// with them afterwards. It is used by one goroutine.
type Sequencer[H any] struct {
	in      *inbox.Inbox
	handler inbox.Handler
	bulk    inbox.BulkHandler // when set, batches go through DeliverBulk
	broker  Broker[H]
	batch   int
	pause   time.Duration // after an error of the inbox
	grace   time.Duration // how long past its due time a head may take to come back
	log     *slog.Logger

	queue   []*Item[H] // arrived (or released), not yet delivered
	blocked map[string]*blockedKey[H]
}

func New[H any](in *inbox.Inbox, h inbox.Handler, b Broker[H], batch int, grace time.Duration, log *slog.Logger) *Sequencer[H] {
	return &Sequencer[H]{in: in, handler: h, broker: b, batch: max(batch, 1), pause: time.Second, grace: grace,
		log: log, blocked: make(map[string]*blockedKey[H])}
}

// NewBulk is New for a BulkHandler: batches go through DeliverBulk, single messages through
// Deliver with bulk given that message alone.
func NewBulk[H any](in *inbox.Inbox, bulk inbox.BulkHandler, b Broker[H], batch int, grace time.Duration, log *slog.Logger) *Sequencer[H] {
	s := New[H](in, One(bulk), b, batch, grace, log)
	s.bulk = bulk
	return s
}

// One is the Handler that runs bulk on one message.
func One(bulk inbox.BulkHandler) inbox.Handler {
	return func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		return bulk(ctx, tx, []inbox.Message{m})
	}
}

// Add queues an arrived message.
func (s *Sequencer[H]) Add(it *Item[H]) { s.queue = append(s.queue, it) }

// Queued is how many messages are queued, not yet delivered (held ones aside).
func (s *Sequencer[H]) Queued() int { return len(s.queue) }

// next takes up to batch messages off the queue that may be delivered now; messages of a
// blocked key (other than the one it waits for) are held instead.
func (s *Sequencer[H]) next() []*Item[H] {
	var ready []*Item[H]
	i := 0
	for ; i < len(s.queue) && len(ready) < s.batch; i++ {
		it := s.queue[i]
		if k := it.Delivery.Message.Key; it.Bad == nil && k != "" {
			if b := s.blocked[k]; b != nil && b.head != it.Ref {
				b.hold(it)
				continue
			}
		}
		ready = append(ready, it)
	}
	s.queue = append(s.queue[:0:0], s.queue[i:]...)
	return ready
}

// Step delivers the next ready messages and settles them with the broker. It returns
// false when nothing was ready, and ctx's error when ctx ended (the messages not settled
// are back in the queue).
func (s *Sequencer[H]) Step(ctx context.Context) (bool, error) {
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
func (s *Sequencer[H]) deliver(ctx context.Context, ready []*Item[H]) ([]inbox.Outcome, error) {
	outs := make([]inbox.Outcome, len(ready))
	ds := make([]inbox.Delivery, 0, len(ready))
	idx := make([]int, 0, len(ready))
	for i, it := range ready {
		if it.Bad == nil {
			ds = append(ds, it.Delivery)
			idx = append(idx, i)
			continue
		}
		if !it.Rejected {
			if err := s.reject(ctx, it); err != nil {
				return nil, err
			}
			it.Rejected = true
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
		deliver := func() ([]inbox.Outcome, error) { return s.in.DeliverBatch(ctx, ds, s.handler) }
		if s.bulk != nil {
			deliver = func() ([]inbox.Outcome, error) { return s.in.DeliverBulk(ctx, ds, s.bulk) }
		}
		os, err := deliver()
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
func (s *Sequencer[H]) reject(ctx context.Context, it *Item[H]) error {
	m := it.Delivery.Message
	s.log.WarnContext(ctx, "inbox: undecodable message rejected to the dead letters", "consumer", s.in.Consumer(),
		"message", it.RejectID, "message_id", m.ID, "reason", it.Bad)
	if m.ID == "" {
		m.ID = it.RejectID
	}
	err := s.in.Reject(ctx, m, it.Bad)
	if errors.Is(err, inbox.ErrInvalidMessage) {
		// Its id or key cannot be stored: record it under the broker's id, keyless.
		m.ID, m.Key, m.Position = it.RejectID, "", 0
		err = s.in.Reject(ctx, m, fmt.Errorf("%w (id %.64q, key %.64q)", it.Bad, it.Delivery.Message.ID, it.Delivery.Message.Key))
	}
	return err
}

// settle acks what committed, has failed messages redelivered after their delay, and
// keeps the order of their keys.
func (s *Sequencer[H]) settle(ctx context.Context, ready []*Item[H], outs []inbox.Outcome) {
	acks := make([]*Item[H], 0, len(ready))
	for i, it := range ready {
		o, k := outs[i], it.Delivery.Message.Key
		if it.Bad != nil {
			k = ""
		}
		switch {
		case !o.Retry:
			acks = append(acks, it)
			if b := s.blocked[k]; b != nil && b.head == it.Ref {
				s.release(k)
			}
		case k != "" && errors.Is(o.Err, inbox.ErrKeyBlocked) && s.blocked[k] != nil:
			s.blocked[k].hold(it)
		default:
			s.broker.Retry(ctx, it, o.Delay)
			if k != "" {
				b := s.blocked[k]
				if b == nil {
					b = &blockedKey[H]{}
					s.blocked[k] = b
				}
				b.head, b.due = it.Ref, time.Now().Add(o.Delay)
			}
		}
	}
	if len(acks) > 0 {
		s.broker.Ack(ctx, acks)
	}
}

// release unblocks key k: its held messages go first in the queue.
func (s *Sequencer[H]) release(k string) {
	b := s.blocked[k]
	if b == nil {
		return
	}
	delete(s.blocked, k)
	if len(b.held) > 0 {
		s.queue = append(b.held, s.queue...)
	}
}

// Expire releases the keys whose head is overdue by more than grace, and returns when the
// next one would be (zero when no key is blocked).
func (s *Sequencer[H]) Expire(ctx context.Context, now time.Time) time.Time {
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

// Unsettled returns the messages not settled with the broker: those queued, and those held
// (with the due time of their key's head).
func (s *Sequencer[H]) Unsettled() (queued []*Item[H], held map[time.Time][]*Item[H]) {
	held = make(map[time.Time][]*Item[H])
	for _, b := range s.blocked {
		held[b.due] = append(held[b.due], b.held...)
	}
	return s.queue, held
}

// ReleaseRef unblocks the key whose head is ref (it will not come back: another consumer
// took it, or it left the stream).
func (s *Sequencer[H]) ReleaseRef(ref string) {
	for k, b := range s.blocked {
		if b.head == ref {
			s.release(k)
			return
		}
	}
}
