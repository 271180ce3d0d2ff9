package natsinbox

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/internal/keyorder"
)

// consumer is one Run's consuming state; the sequencer survives reconnects and consumer
// re-creations, so that held messages and blocked keys are kept.
type consumer struct {
	a   *Adapter
	js  jetstream.JetStream
	seq *keyorder.Sequencer[jetstream.Msg]
	hb  *heartbeats
}

// consume creates (or updates) the durable consumer and delivers its messages until ctx
// ends or the pull subscription fails for good (the consumer was deleted, say).
func (c *consumer) consume(ctx context.Context) error {
	cfg := c.a.cfg
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ccfg := jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		MaxAckPending: cfg.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if len(cfg.FilterSubjects) == 1 {
		ccfg.FilterSubject = cfg.FilterSubjects[0] // servers before 2.10 know only this one
	} else {
		ccfg.FilterSubjects = cfg.FilterSubjects
	}
	cons, err := c.ensureConsumer(cctx, ccfg)
	cancel()
	if err != nil {
		return fmt.Errorf("natsinbox: creating consumer %s on stream %s: %w", cfg.Durable, cfg.Stream, err)
	}
	buffer := max(2*cfg.Batch, 64)
	it, err := cons.Messages(jetstream.PullMaxMessages(buffer))
	if err != nil {
		return fmt.Errorf("natsinbox: pulling from %s: %w", cfg.Durable, err)
	}
	defer it.Stop()
	arrivals := make(chan jetstream.Msg, buffer)
	failed := make(chan error, 1)
	go func() {
		for {
			m, err := it.Next()
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					failed <- err
				}
				close(arrivals)
				return
			}
			arrivals <- m
		}
	}()
	defer func() {
		it.Stop()
		for m := range arrivals { // not ours: the next delivery is someone's
			_ = m.Nak()
		}
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		for c.seq.Queued() < cfg.Batch {
			select {
			case m, ok := <-arrivals:
				if !ok {
					return c.stopped(failed)
				}
				c.arrive(ctx, m)
				continue
			default:
			}
			break
		}
		progressed, err := c.seq.Step(ctx)
		if err != nil {
			return err
		}
		if progressed {
			continue
		}
		wait := time.Hour
		if next := c.seq.Expire(ctx, time.Now()); !next.IsZero() {
			wait = max(time.Until(next), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-arrivals:
			if !ok {
				return c.stopped(failed)
			}
			c.arrive(ctx, m)
		case <-timer.C:
		}
	}
}

// ensureConsumer returns the durable consumer, creating it, or updating it when its
// settings differ from ccfg. A consumer that already matches is not updated: on nats-server
// 2.9 an update of the consumer forgets its redelivery counts (a nacked message comes back
// with NumDelivered 1), which would hide redeliveries from the inbox.
func (c *consumer) ensureConsumer(ctx context.Context, ccfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	stream := c.a.cfg.Stream
	cons, err := c.js.Consumer(ctx, stream, ccfg.Durable)
	if err == nil {
		cur := cons.CachedInfo().Config
		if cur.AckPolicy == ccfg.AckPolicy && cur.AckWait == ccfg.AckWait && cur.MaxDeliver == ccfg.MaxDeliver &&
			(ccfg.MaxAckPending == 0 || cur.MaxAckPending == ccfg.MaxAckPending) &&
			cur.FilterSubject == ccfg.FilterSubject && slices.Equal(cur.FilterSubjects, ccfg.FilterSubjects) {
			return cons, nil
		}
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	return c.js.CreateOrUpdateConsumer(ctx, stream, ccfg)
}

func (c *consumer) stopped(failed <-chan error) error {
	select {
	case err := <-failed:
		return fmt.Errorf("natsinbox: pull subscription ended: %w", err)
	default:
		return errors.New("natsinbox: pull subscription ended")
	}
}

// arrive decodes m and queues it.
func (c *consumer) arrive(ctx context.Context, m jetstream.Msg) {
	it, err := c.decode(m)
	if err != nil {
		// Not a JetStream message: nothing to reject it under. Terminate it so that it does
		// not come back, and say so.
		c.a.log.ErrorContext(ctx, "natsinbox: message without JetStream metadata terminated", "subject", m.Subject(), "error", err)
		_ = m.Term()
		return
	}
	c.hb.add(it.Ref, m)
	c.seq.Add(it)
}

// decode reads m's CloudEvents binding into an item; a message that does not decode is an
// item with bad set, which the sequencer rejects.
func (c *consumer) decode(m jetstream.Msg) (*keyorder.Item[jetstream.Msg], error) {
	meta, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	ref := strconv.FormatUint(meta.Sequence.Stream, 10)
	it := &keyorder.Item[jetstream.Msg]{Ref: ref, RejectID: "nats:" + meta.Stream + ":" + ref, Handle: m}
	it.Delivery.Redelivered = meta.NumDelivered > 1
	env, err := envelope(m.Subject(), c.a.cfg.SubjectPrefix, m.Headers(), m.Data())
	msg, merr := env.Message()
	it.Delivery.Message = msg
	it.Bad = cmpErr(err, merr)
	if it.Bad != nil {
		it.Delivery.Message.Topic = env.Topic
		if it.Delivery.Message.Topic == "" {
			it.Delivery.Message.Topic = m.Subject()
		}
	}
	return it, nil
}

func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// envelope maps the NATS binding of the CloudEvents binary mode back to an Envelope: ce-
// headers (any letter case) are attributes, percent-decoded; Nats- headers are JetStream's
// and skipped; the others are user headers (several values of one are joined with ", ").
func envelope(subject, prefix string, h map[string][]string, data []byte) (inbox.Envelope, error) {
	env := inbox.Envelope{Attributes: make(map[string]string, 8), Payload: data}
	var bad error
	if t, ok := strings.CutPrefix(subject, prefix); ok && t != "" {
		env.Topic = t
	} else {
		bad = fmt.Errorf("%w: subject %.128q lacks the prefix %q", inbox.ErrInvalidMessage, subject, prefix)
	}
	for name, vals := range h {
		if len(vals) == 0 {
			continue
		}
		v := strings.Join(vals, ", ")
		switch {
		case len(name) > 3 && strings.EqualFold(name[:3], "ce-"):
			dv, err := url.PathUnescape(v)
			if err != nil && bad == nil {
				bad = fmt.Errorf("%w: header %.64q: bad percent-encoding", inbox.ErrInvalidMessage, name)
			}
			env.Attributes[strings.ToLower(name[3:])] = dv
		case len(name) >= 5 && strings.EqualFold(name[:5], "nats-"):
		default:
			if env.Headers == nil {
				env.Headers = make(map[string]string, len(h))
			}
			env.Headers[name] = v
		}
	}
	return env, bad
}

// Ack acknowledges its. Not DoubleAck: an ack that is lost only brings a redelivery, which
// the inbox answers as a Duplicate (one Attempt statement), while DoubleAck would cost a
// round trip per message.
func (c *consumer) Ack(ctx context.Context, its []*keyorder.Item[jetstream.Msg]) {
	for _, it := range its {
		c.hb.remove(it.Ref)
		if err := it.Handle.Ack(); err != nil {
			c.a.log.WarnContext(ctx, "natsinbox: ack failed; the message will be redelivered (a duplicate)",
				"message", it.RejectID, "error", err)
		}
	}
}

// Retry naks it with delay: JetStream redelivers it then, with NumDelivered one more.
func (c *consumer) Retry(ctx context.Context, it *keyorder.Item[jetstream.Msg], delay time.Duration) {
	c.hb.remove(it.Ref)
	if err := it.Handle.NakWithDelay(delay); err != nil {
		c.a.log.WarnContext(ctx, "natsinbox: nak failed; redelivered after ack wait instead", "message", it.RejectID, "error", err)
	}
}

// shutdown hands the messages the adapter holds back to JetStream: queued ones at once,
// ones held behind a retry a second after their key's head is due, so that it comes back
// first.
func (c *consumer) shutdown() {
	queued, held := c.seq.Unsettled()
	for _, it := range queued {
		// Not a plain Nak: on nats-server 2.9 the message then came back to the next
		// process with NumDelivered 1, hiding the redelivery from the inbox.
		_ = it.Handle.NakWithDelay(time.Millisecond)
	}
	for due, its := range held {
		for _, it := range its {
			_ = it.Handle.NakWithDelay(max(time.Until(due), 0) + time.Second)
		}
	}
	c.hb.clear()
}

// heartbeats signals InProgress for the messages the adapter holds unacknowledged (queued,
// held behind a retry, or being delivered), so that AckWait does not expire on them.
type heartbeats struct {
	mu sync.Mutex
	m  map[string]jetstream.Msg
}

func newHeartbeats() *heartbeats { return &heartbeats{m: make(map[string]jetstream.Msg)} }

func (h *heartbeats) add(ref string, m jetstream.Msg) {
	h.mu.Lock()
	h.m[ref] = m
	h.mu.Unlock()
}

func (h *heartbeats) remove(ref string) {
	h.mu.Lock()
	delete(h.m, ref)
	h.mu.Unlock()
}

func (h *heartbeats) clear() {
	h.mu.Lock()
	clear(h.m)
	h.mu.Unlock()
}

func (h *heartbeats) run(ctx context.Context, every time.Duration, log interface {
	WarnContext(context.Context, string, ...any)
}) {
	t := time.NewTicker(max(every, 100*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		msgs := make([]jetstream.Msg, 0, len(h.m))
		for _, m := range h.m {
			msgs = append(msgs, m)
		}
		h.mu.Unlock()
		for _, m := range msgs {
			if err := m.InProgress(); err != nil {
				log.WarnContext(ctx, "natsinbox: in-progress signal failed", "subject", m.Subject(), "error", err)
				break
			}
		}
	}
}
