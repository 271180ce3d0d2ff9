package amqpinbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox/inbox"
)

// session is the processing of one channel's deliveries.
type session struct {
	c     *Consumer
	h     inbox.Handler
	items []*item // unacked deliveries, in delivery order
}

// item is a delivery on its way through the inbox.
type item struct {
	d           amqp091.Delivery
	msg         inbox.Message
	bad         error // the delivery does not decode: Reject it
	redelivered bool  // the next delivery counts (its handler failed)
	judged      bool  // the broker's redelivered flag was used (counted) once
	notBefore   time.Time
	done        bool
}

// loop reads deliveries and applies those ready, until the channel closes or ctx ends.
func (s *session) loop(ctx context.Context, ds <-chan amqp091.Delivery, closed <-chan *amqp091.Error) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		// What is ready now is applied before waiting again.
		s.apply(ctx)
		wake := time.Hour
		if t, ok := s.next(); ok {
			wake = max(time.Until(t), 0)
		}
		timer.Reset(wake)
		select {
		case <-ctx.Done():
			return nil
		case err := <-closed:
			if err == nil {
				return errors.New("channel closed")
			}
			return err
		case d, ok := <-ds:
			if !ok {
				return errors.New("delivery channel closed")
			}
			s.add(d)
			// Take what else arrived, without waiting for more.
			for more := true; more && len(s.items) < s.c.cfg.Prefetch; {
				select {
				case d, ok := <-ds:
					if !ok {
						return errors.New("delivery channel closed")
					}
					s.add(d)
				default:
					more = false
				}
			}
		case <-timer.C:
		}
	}
}

func (s *session) add(d amqp091.Delivery) {
	it := &item{d: d}
	it.msg, it.bad = s.c.decode(d)
	s.items = append(s.items, it)
}

// next is the earliest time an item waits for.
func (s *session) next() (time.Time, bool) {
	var t time.Time
	for _, it := range s.items {
		if !it.done && !it.notBefore.IsZero() && (t.IsZero() || it.notBefore.Before(t)) {
			t = it.notBefore
		}
	}
	return t, !t.IsZero()
}

// ready returns up to Batch items that may be applied now, in delivery order: due, and
// with no earlier unacked item of their key (a key's later messages wait for its retry).
// An unreadable item is returned alone.
func (s *session) ready(now time.Time) []*item {
	var out []*item
	held := map[string]bool{}
	for _, it := range s.items {
		if it.done {
			continue
		}
		key := it.msg.Key
		blocked := key != "" && held[key]
		if key != "" {
			held[key] = true
		}
		if blocked || it.notBefore.After(now) {
			continue
		}
		if it.bad != nil {
			if len(out) == 0 {
				return []*item{it}
			}
			break
		}
		if it.redelivered && len(out) > 0 {
			continue // a retry goes alone (see below); after this chunk
		}
		out = append(out, it)
		if it.redelivered || len(out) == s.c.cfg.Batch {
			// A retry alone: in a batch, a failing handler would run twice (the batch's
			// transaction, then the inbox's one-by-one pass).
			break
		}
	}
	return out
}

// apply applies the ready items until none is ready.
func (s *session) apply(ctx context.Context) {
	for ctx.Err() == nil {
		chunk := s.ready(time.Now())
		if len(chunk) == 0 {
			break
		}
		if chunk[0].bad != nil {
			s.reject(ctx, chunk[0])
		} else {
			s.deliver(ctx, chunk)
		}
		for _, it := range chunk {
			if it.done {
				if err := it.d.Ack(false); err != nil {
					// The channel is gone: the broker redelivers it, and the inbox finds it
					// a duplicate.
					s.c.log.DebugContext(ctx, "amqpinbox: ack failed", "queue", s.c.cfg.Queue, "error", err)
				}
			}
		}
		s.items = deleteDone(s.items)
	}
}

func deleteDone(items []*item) []*item {
	out := items[:0]
	for _, it := range items {
		if !it.done {
			out = append(out, it)
		}
	}
	clear(items[len(out):])
	return out
}

func (s *session) deliver(ctx context.Context, chunk []*item) {
	ds := make([]inbox.Delivery, len(chunk))
	for j, it := range chunk {
		ds[j] = inbox.Delivery{Message: it.msg, Redelivered: it.redelivered || !it.judged && it.d.Redelivered}
		it.judged = true
	}
	var (
		outs []inbox.Outcome
		err  error
	)
	if len(ds) == 1 {
		var o inbox.Outcome
		o, err = s.c.in.Deliver(ctx, ds[0], s.h)
		outs = []inbox.Outcome{o}
	} else {
		outs, err = s.c.in.DeliverBatch(ctx, ds, s.h)
	}
	now := time.Now()
	if err != nil {
		if ctx.Err() == nil {
			s.c.log.WarnContext(ctx, "amqpinbox: the inbox failed; delivering again after a pause",
				"queue", s.c.cfg.Queue, "messages", len(chunk), "pause", s.c.cfg.ErrorDelay, "error", err)
		}
		for j, it := range chunk {
			it.notBefore, it.redelivered = now.Add(s.c.cfg.ErrorDelay), ds[j].Redelivered
		}
		return
	}
	for j, it := range chunk {
		o := outs[j]
		if !o.Retry {
			it.done = true
			continue
		}
		it.notBefore = now.Add(o.Delay)
		if errors.Is(o.Err, inbox.ErrKeyBlocked) {
			// Not run: whatever its delivery counted stands; the next one counts nothing new.
			it.redelivered = false
			continue
		}
		it.redelivered = true
		s.c.log.WarnContext(ctx, "amqpinbox: handler failed; retrying after the delay",
			"queue", s.c.cfg.Queue, "message_id", it.msg.ID, "attempt", o.Attempt, "delay", o.Delay, "error", o.Err)
	}
}

// reject records an unreadable delivery in the dead letters (then it is acked).
func (s *session) reject(ctx context.Context, it *item) {
	m := it.msg
	brokerID := s.brokerID(it.d)
	if m.ID == "" {
		m.ID = brokerID
	}
	err := s.c.in.Reject(ctx, m, it.bad)
	if errors.Is(err, inbox.ErrInvalidMessage) { // an id or key the inbox cannot store
		m.ID, m.Key, m.Position = brokerID, "", 0
		err = s.c.in.Reject(ctx, m, it.bad)
	}
	if err != nil {
		if ctx.Err() == nil {
			s.c.log.WarnContext(ctx, "amqpinbox: recording an unreadable message failed; trying again after a pause",
				"queue", s.c.cfg.Queue, "error", err)
		}
		it.notBefore = time.Now().Add(s.c.cfg.ErrorDelay)
		return
	}
	s.c.log.WarnContext(ctx, "amqpinbox: unreadable message moved to the dead letters",
		"queue", s.c.cfg.Queue, "message_id", m.ID, "reason", it.bad)
	it.done = true
}

// brokerID is a stable id for a delivery without a usable id: "amqp:<queue>:<message-id>",
// or, without a message-id, "amqp:<queue>:sha256:<hash of routing key, headers and body>"
// (a delivery tag changes with every redelivery; identical messages share the id, and one
// dead letter).
func (s *session) brokerID(d amqp091.Delivery) string {
	prefix := "amqp:" + s.c.cfg.Queue + ":"
	if d.MessageId != "" && len(prefix)+len(d.MessageId) <= inbox.MaxIDBytes && !strings.ContainsRune(d.MessageId, 0) {
		return prefix + d.MessageId
	}
	h := sha256.New()
	fmt.Fprintf(h, "%q %q %v %q\n", d.RoutingKey, d.MessageId, d.Headers, d.ContentType)
	h.Write(d.Body)
	sum := h.Sum(nil)
	return prefix + "sha256:" + hex.EncodeToString(sum[:16])
}
