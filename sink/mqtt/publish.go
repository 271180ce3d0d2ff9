package mqtt

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/ascii"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/internal/confirm"
)

// batch is one Publish call: its messages, their MQTT topics and their acknowledgement
// state, shared by Publish, its sender goroutine and the connection's reader.
type batch struct {
	*confirm.Batch
	msgs   []*outbox.Record
	topics []string // MQTT topic per message
}

// slotRef names a message of a batch.
type slotRef struct {
	b *batch
	i int
}

// Publish sends msgs at QoS 1 in slice order without waiting between messages (up to the
// broker's Receive Maximum in flight), then waits until the broker acknowledged every one
// (PUBACK), ctx ends, or Config.PublishTimeout passes. It returns one result per message:
// nil for a PUBACK with a success reason code, "no matching subscribers" included.
//
// When the connection drops during a batch, the rest of the batch is not sent, so that no
// later message of a key can reach the broker ahead of an earlier one lost with the
// connection.
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
	c := s.cur.Load()
	if c == nil {
		fill(res, notConnected(s.lastError()))
		return res
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	b := &batch{Batch: confirm.New(res), msgs: msgs, topics: make([]string, len(msgs))}
	for i, r := range msgs {
		topic, err := s.topics.get(r.Topic)
		b.topics[i] = topic
		if err == nil {
			err = s.check(r)
		}
		if err != nil {
			b.Refuse(i, err)
		}
	}
	if b.Sendable() == 0 {
		return res
	}

	// One batch at a time per connection, so that a batch's messages go out in order.
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		b.Stop(0, notSent(s.ctxErr(parent)))
		return res
	case <-c.dead:
		b.Stop(0, notSent(fmt.Errorf("%w: %v", ErrConnectionLost, c.reason())))
		return res
	}
	b.Start()
	s.senders.Add(1)
	go func() {
		defer s.senders.Done()
		defer func() { <-c.sem }()
		s.send(ctx, parent, c, b)
	}()
	select {
	case <-b.Done():
	case <-ctx.Done():
		// The sender may be stuck in a write to a broker that stopped reading: leave it
		// behind; it stops at the next message, or when its write times out.
		err := s.ctxErr(parent)
		stuck := b.Abandon(notSent(err), fmt.Errorf("mqtt sink: waiting for PUBACK: %w", err))
		if stuck && parent.Err() == nil {
			// The broker kept messages unacknowledged for the whole publish timeout: they
			// hold its Receive Maximum, so later batches would stall too. Start over on a
			// new connection. (A caller's cancellation is no sign of trouble: the PUBACKs
			// still free the window when they come.)
			c.kill(fmt.Errorf("no PUBACK within the publish timeout of %s", s.timeout))
		}
	}
	return res
}

// send writes the batch's messages in order. Messages that cannot be sent get their error at
// once; sent ones are pending until their PUBACK.
func (s *Sink) send(ctx, parent context.Context, c *conn, b *batch) {
	defer b.EndSending()
	stop := b.Stop
	done := ctx.Done()
	var (
		buf    []byte
		props  []userProperty
		credit int // window slots taken and not used yet
		left   int // messages still to send
	)
	left = b.Sendable()
	release := func() {
		for ; credit > 0; credit-- {
			<-c.window
		}
	}
	defer release()
	for i, r := range b.msgs {
		if b.Skip(i) {
			continue
		}
		props = s.properties(props[:0], r)
		ct := contentType(r)
		if size := packetSize(b.topics[i], ct, props, len(r.Payload)); size > c.maxPacket {
			b.Fail(i, tooLarge(size, c.maxPacket))
			left--
			continue
		}
		// A slot in the broker's Receive Maximum. When none is free, flush (PUBACKs only
		// come for messages the broker has seen) and wait until a quarter of the window is
		// free, so that the next write carries several messages rather than one per PUBACK.
		if credit == 0 {
			select {
			case c.window <- struct{}{}:
				credit = 1
			default:
				if err := c.flush(); err != nil {
					c.kill(fmt.Errorf("writing: %w", err))
				}
				want := max(1, min(cap(c.window)/4, left))
				for credit < want {
					select {
					case c.window <- struct{}{}:
						credit++
					case <-done:
						release()
						stop(i, notSent(s.ctxErr(parent)))
						return
					case <-c.dead:
						release()
						stop(i, notSent(fmt.Errorf("%w: %v", ErrConnectionLost, c.reason())))
						return
					}
				}
			}
		}
		select {
		case <-done:
			release()
			stop(i, notSent(s.ctxErr(parent)))
			return
		default:
		}
		credit--
		left--
		b.Pending(i)
		id, ok := c.register(slotRef{b, i})
		if !ok {
			err := notSent(fmt.Errorf("%w: %v", ErrConnectionLost, c.reason()))
			b.Lost(i, err, err)
			return
		}
		buf = appendPublish(buf[:0], b.topics[i], id, ct, props, len(r.Payload))
		c.wmu.Lock()
		err := c.write(buf, r.Payload)
		c.wmu.Unlock()
		if err != nil {
			// The connection is broken: kill fails this message and every other in flight.
			c.kill(fmt.Errorf("writing: %w", err))
			stop(i+1, notSent(fmt.Errorf("%w: %v", ErrConnectionLost, c.reason())))
			return
		}
	}
	if err := c.flush(); err != nil {
		c.kill(fmt.Errorf("writing: %w", err))
	}
}

// userProperty is an MQTT 5 user property.
type userProperty struct{ key, value string }

// properties appends the user properties of r: the CloudEvents attributes by their plain
// names (datacontenttype travels as the Content Type property instead), then the user's
// headers, whose names check made sure are valid attribute names that are not the
// envelope's: under the MQTT binding every user property is an attribute.
func (s *Sink) properties(props []userProperty, r *outbox.Record) []userProperty {
	for _, a := range sink.Attributes(r, s.source) {
		if a.Name != "datacontenttype" {
			props = append(props, userProperty{a.Name, a.Value})
		}
	}
	for name, v := range r.Headers {
		if ascii.EqualFold(name, "content-type") {
			continue
		}
		props = append(props, userProperty{name, v})
	}
	return props
}

// checkAttributeName returns why a user header cannot travel under the MQTT binding, which
// reads every user property as a CloudEvents attribute named as the property: such a name
// is lower-case ASCII letters and digits only (CloudEvents 1.0, "Attribute Naming
// Convention"). content-type is the exception: it is the Content Type property.
func checkAttributeName(name string) string {
	if ascii.EqualFold(name, "content-type") {
		return ""
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return "is not a CloudEvents attribute name (lower-case letters and digits only), which the MQTT binding requires of every user property; rename it (X-Request-Id: requestid)"
		}
	}
	return ""
}

// contentType returns the user's content-type header, or "".
func contentType(r *outbox.Record) string {
	for name, v := range r.Headers {
		if ascii.EqualFold(name, "content-type") {
			return v
		}
	}
	return ""
}

// check returns the permanent error of a message the broker cannot take, or nil: headers
// sink.CheckHeaders refuses or that are no CloudEvents attribute names, strings that are not
// valid MQTT strings (the broker would drop the connection) and packets larger
// than the broker's Maximum Packet Size.
func (s *Sink) check(r *outbox.Record) error {
	if reason := checkField(r.Key); reason != "" {
		return sink.Permanent(fmt.Errorf("mqtt sink: key (the subject attribute) %s", reason))
	}
	if reason := checkField(r.EventType()); reason != "" {
		return sink.Permanent(fmt.Errorf("mqtt sink: type %s", reason))
	}
	if err := sink.CheckHeaders(r); err != nil {
		return fmt.Errorf("mqtt sink: %w", err)
	}
	for name, v := range r.Headers {
		if reason := checkAttributeName(name); reason != "" {
			return sink.Permanent(fmt.Errorf("mqtt sink: header name %.40q %s", name, reason))
		}
		if reason := checkField(name); reason != "" {
			return sink.Permanent(fmt.Errorf("mqtt sink: header name %.40q: %s", name, reason))
		}
		if reason := checkField(v); reason != "" {
			return sink.Permanent(fmt.Errorf("mqtt sink: header %.40q: value %s", name, reason))
		}
	}
	return nil
}

// checkField is checkString plus the length limit of an MQTT string.
func checkField(s string) string {
	if len(s) > maxString {
		return fmt.Sprintf("is %d bytes, longer than the MQTT limit of %d", len(s), maxString)
	}
	if reason := checkString(s); reason != "" {
		return "is not a valid MQTT string: " + reason
	}
	return ""
}

// tooLarge is the permanent error of a packet over the broker's Maximum Packet Size.
func tooLarge(size, limit int) error {
	return sink.Permanent(fmt.Errorf("mqtt sink: PUBLISH packet of %d bytes exceeds the broker's maximum packet size of %d bytes", size, limit))
}

// appendPublish appends a QoS 1 PUBLISH packet without its payload (of payloadLen bytes,
// written after it).
func appendPublish(buf []byte, topic string, id uint16, contentType string, props []userProperty, payloadLen int) []byte {
	propLen := 0
	if contentType != "" {
		propLen += 1 + 2 + len(contentType)
	}
	for _, p := range props {
		propLen += 1 + 2 + len(p.key) + 2 + len(p.value)
	}
	remaining := 2 + len(topic) + 2 + vbiLen(propLen) + propLen + payloadLen
	buf = append(buf, 0x30|1<<1) // PUBLISH, QoS 1, not DUP, not RETAIN
	buf = appendVBI(buf, remaining)
	buf = appendString(buf, topic)
	buf = binary.BigEndian.AppendUint16(buf, id)
	buf = appendVBI(buf, propLen)
	if contentType != "" {
		buf = append(buf, 0x03) // Content Type
		buf = appendString(buf, contentType)
	}
	for _, p := range props {
		buf = append(buf, 0x26) // User Property
		buf = appendString(buf, p.key)
		buf = appendString(buf, p.value)
	}
	return buf
}

// packetSize returns the size of the PUBLISH packet appendPublish would write, payload
// included.
func packetSize(topic, contentType string, props []userProperty, payloadLen int) int {
	propLen := 0
	if contentType != "" {
		propLen += 1 + 2 + len(contentType)
	}
	for _, p := range props {
		propLen += 1 + 2 + len(p.key) + 2 + len(p.value)
	}
	remaining := 2 + len(topic) + 2 + vbiLen(propLen) + propLen + payloadLen
	return 1 + vbiLen(remaining) + remaining
}

func appendString(buf []byte, s string) []byte {
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(s)))
	return append(buf, s...)
}

// appendVBI appends n as an MQTT variable byte integer.
func appendVBI(buf []byte, n int) []byte {
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		buf = append(buf, b)
		if n == 0 {
			return buf
		}
	}
}

func vbiLen(n int) int {
	switch {
	case n < 1<<7:
		return 1
	case n < 1<<14:
		return 2
	case n < 1<<21:
		return 3
	default:
		return 4
	}
}

// ctxErr tells the caller's cancellation from the sink's own publish timeout.
func (s *Sink) ctxErr(parent context.Context) error {
	if err := parent.Err(); err != nil {
		return err
	}
	return fmt.Errorf("no PUBACK within the publish timeout of %s: %w", s.timeout, context.DeadlineExceeded)
}

func fill(res []error, err error) {
	for i := range res {
		res[i] = err
	}
}
