package amqp

import (
	"context"
	"fmt"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/ascii"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/internal/confirm"
)

// Publishing pipelines: a batch is sent on the session's channel without waiting, each
// message under the delivery tag the channel gives it, and the session's reader settles
// each tag from the broker's confirmations (in tag order, as the library resequences them).
// Confirmations are read from Channel.NotifyPublish rather than per-message deferred
// confirmations because a return must be matched to its ack in the order the broker sent
// them, which only a single reader of both can do (see session.read).

// batch is one Publish call: its messages, where they go, and their confirmation state,
// shared by Publish, its sender goroutine and the session's reader.
type batch struct {
	*confirm.Batch
	msgs     []*outbox.Record
	exchange string
	keys     []string // routing key per message
	ids      []string // message id per sent message, to match returns
}

// Publish sends msgs to the exchange in slice order without waiting between messages, then
// waits until the broker confirmed every one, ctx ends, or Config.PublishTimeout passes.
// It returns one result per message: nil once the broker confirmed it (a persistent
// message routed to durable queues is confirmed once written to disk).
//
// A message the broker returns as unroutable fails with a retryable error wrapping
// ErrUnroutable, although the broker acks it too; a nacked one wraps ErrNacked. When the
// channel or connection closes during a batch, the rest of the batch is not sent, so that
// no later message of a key can be stored ahead of an earlier one lost with the connection.
func (s *Sink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	res := make([]error, len(msgs))
	if len(msgs) == 0 {
		return res
	}
	defer markUnavailable(res)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.isClosed {
		fill(res, ErrClosed)
		return res
	}
	if err := ctx.Err(); err != nil {
		fill(res, notSent(err))
		return res
	}
	ss := s.cur.Load()
	if ss == nil {
		fill(res, notConnected(s.lastError()))
		return res
	}
	if reason := ss.blockedReason(); reason != "" {
		fill(res, fmt.Errorf("amqp sink: not sent: %w (%s); will retry", errBlocked, reason))
		return res
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	b := &batch{
		Batch:    confirm.New(res),
		msgs:     msgs,
		exchange: s.exchange,
		keys:     make([]string, len(msgs)),
		ids:      make([]string, len(msgs)),
	}
	for i, r := range msgs {
		key, err := s.keys.get(r.Topic)
		if err == nil {
			err = s.check(r)
		}
		b.keys[i] = key
		if err != nil {
			b.Refuse(i, err)
		}
	}
	if b.Sendable() == 0 {
		return res
	}

	// One batch at a time per channel: its delivery tags must follow its send order.
	select {
	case ss.sem <- struct{}{}:
	case <-ctx.Done():
		b.Stop(0, notSent(s.ctxErr(parent)))
		return res
	case <-ss.dead:
		b.Stop(0, notSent(lost(ss.reason())))
		return res
	}
	b.Start()
	s.senders.Add(1)
	go func() {
		defer s.senders.Done()
		defer func() { <-ss.sem }()
		s.send(ctx, parent, ss, b)
	}()
	select {
	case <-b.Done():
	case <-ctx.Done():
		// The sender may be stuck in a write (TCP pushback from a blocked broker): leave it
		// behind; it stops at the next message, or when the connection closes.
		err := s.ctxErr(parent)
		b.Abandon(notSent(err), fmt.Errorf("amqp sink: waiting for publisher confirm: %w", err))
	}
	return res
}

// send publishes the batch's messages in order on the session's channel. Messages that
// cannot be sent get their error at once; sent ones are pending until their confirmation.
func (s *Sink) send(ctx, parent context.Context, ss *session, b *batch) {
	defer b.EndSending()
	// One property table for the whole batch: the library encodes it before Publish returns
	// and keeps no reference.
	headers := make(amqp091.Table, 16)
	pub := amqp091.Publishing{DeliveryMode: amqp091.Persistent, AppId: s.source, Headers: headers}
	done := ctx.Done()
	for i, r := range b.msgs {
		if b.Skip(i) {
			continue
		}
		select {
		case <-done:
			b.Stop(i, notSent(s.ctxErr(parent)))
			return
		case <-ss.dead:
			b.Stop(i, notSent(lost(ss.reason())))
			return
		default:
		}
		s.fill(&pub, headers, r)
		b.ids[i] = pub.MessageId
		// Pending before the publish: the confirmation may arrive before Publish returns.
		b.Pending(i)
		tag := ss.ch.GetNextPublishSeqNo()
		if !ss.register(tag, slotRef{b, i}) {
			err := notSent(lost(ss.reason()))
			b.Lost(i, err, err)
			return
		}
		// mandatory: an unroutable message comes back as basic.return instead of vanishing.
		if err := ss.ch.PublishWithContext(ctx, b.exchange, b.keys[i], true, false, pub); err != nil {
			if ctx.Err() != nil {
				err = s.ctxErr(parent)
			}
			err = notSent(err)
			// When unregister fails, the reader already settled the message with the channel's
			// close reason, and Lost leaves it alone.
			ss.unregister(tag)
			b.Lost(i, err, fmt.Errorf("amqp sink: not sent after an earlier send failed: %w", err))
			return
		}
	}
}

// check returns the permanent error of a message the broker cannot take, or nil: a header
// sink.CheckHeaders refuses (CC, BCC and the x-death family among them), or a name or
// content-type longer than an AMQP short string.
func (s *Sink) check(r *outbox.Record) error {
	if len(r.Payload) > s.maxBytes {
		return sink.Permanent(fmt.Errorf("amqp sink: payload of %d bytes exceeds max_message_bytes (%d)", len(r.Payload), s.maxBytes))
	}
	if err := sink.CheckHeaders(r); err != nil {
		return fmt.Errorf("amqp sink: %w", err)
	}
	for name, v := range r.Headers {
		if len(name) > maxShortstr {
			return sink.Permanent(fmt.Errorf("amqp sink: header name %.40q... is %d bytes, longer than the AMQP limit of %d", name, len(name), maxShortstr))
		}
		if len(v) > maxShortstr && ascii.EqualFold(name, "content-type") {
			return sink.Permanent(fmt.Errorf("amqp sink: content-type of %d bytes is longer than the AMQP limit of %d", len(v), maxShortstr))
		}
	}
	return nil
}

// fill sets pub to the AMQP message of r: properties, the CloudEvents attributes as
// cloudEvents:* headers (datacontenttype as the content-type property) and the user's
// headers.
func (s *Sink) fill(pub *amqp091.Publishing, headers amqp091.Table, r *outbox.Record) {
	clear(headers)
	for name, v := range r.Headers {
		if ascii.EqualFold(name, "content-type") {
			continue // datacontenttype, below
		}
		headers[name] = v
	}
	pub.ContentType = ""
	for _, a := range sink.Attributes(r, s.source) {
		switch a.Name {
		case "datacontenttype":
			pub.ContentType = a.Value
			continue
		case "id":
			pub.MessageId = a.Value
		}
		headers[ceProperty(a.Name)] = a.Value
	}
	pub.Type = r.EventType()
	if len(pub.Type) > maxShortstr {
		pub.Type = "" // cloudEvents:type carries it
	}
	pub.Timestamp = r.CreatedAt
	pub.Body = r.Payload
}

// ceProperty maps a CloudEvents attribute to its AMQP application property, without
// allocating for the known attributes.
func ceProperty(attr string) string {
	switch attr {
	case "id":
		return "cloudEvents:id"
	case "source":
		return "cloudEvents:source"
	case "specversion":
		return "cloudEvents:specversion"
	case "type":
		return "cloudEvents:type"
	case "subject":
		return "cloudEvents:subject"
	case "time":
		return "cloudEvents:time"
	case sink.SeqAttribute:
		return "cloudEvents:outboxseq"
	default:
		return "cloudEvents:" + attr
	}
}

// ctxErr tells the caller's cancellation from the sink's own publish timeout.
func (s *Sink) ctxErr(parent context.Context) error {
	if err := parent.Err(); err != nil {
		return err
	}
	return fmt.Errorf("no publisher confirm within the publish timeout of %s: %w", s.timeout, context.DeadlineExceeded)
}

func fill(res []error, err error) {
	for i := range res {
		res[i] = err
	}
}
