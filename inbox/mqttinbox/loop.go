package mqttinbox

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outboxgo/outbox/inbox"
)

// arrival is a PUBLISH as paho handed it over, with the client to acknowledge it on and the
// connection it came on.
type arrival struct {
	client *paho.Client
	pub    *paho.Publish
	conn   uint64
}

// queue is what the paho callback fills and the loop drains. It is unbounded in principle
// and bounded in practice: the broker sends at most ReceiveMaximum unacknowledged messages.
//
// A new connection's messages can arrive before OnConnectionUp tells whether it resumed the
// session: paho reads the connection as soon as the CONNACK is in, and a broker resending a
// resumed session's unacknowledged messages sends them right after it. So the connection a
// message came on is counted by down (OnConnectionDown, called once the lost connection's
// client has stopped, before the next one dials), not by up; and take hands out a
// connection's messages only once up has recorded it. Dropping or handing out a new
// connection's messages as those of an older one would lose them for good: the broker
// resends nothing on the connection it sent them on, and every later PUBACK waits behind
// theirs (paho sends them in order).
type queue struct {
	mu     sync.Mutex
	items  []arrival
	conn   uint64 // the connection messages arrive on now: one more after each lost connection
	gen    uint64 // the latest connection up: take hands out the arrivals of connections up to it
	epoch  uint64 // connections that resumed a session, so that the broker resends what is unacknowledged
	notify chan struct{}
}

func newQueue() *queue { return &queue{conn: 1, notify: make(chan struct{}, 1)} }

// down records that the current connection is lost and that its client has stopped: what
// arrives from now on comes on the next connection.
func (q *queue) down() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.conn++
}

// up records a new connection and returns its number. When it resumed the session, the
// broker resends every message not acknowledged yet: the copies still queued from older
// connections are dropped, and the ones that came on this connection already are kept.
func (q *queue) up(sessionPresent bool) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.gen = q.conn
	if sessionPresent && q.gen > 1 {
		q.epoch++
		keep := q.items[:0]
		for _, a := range q.items {
			if a.conn >= q.gen {
				keep = append(keep, a)
			}
		}
		clear(q.items[len(keep):])
		q.items = keep
	}
	q.signal() // arrivals held back until now can be taken
	return q.gen
}

func (q *queue) generation() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.gen
}

func (q *queue) push(c *paho.Client, p *paho.Publish) {
	q.mu.Lock()
	q.items = append(q.items, arrival{client: c, pub: p, conn: q.conn})
	q.mu.Unlock()
	q.signal()
}

func (q *queue) signal() {
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

// take removes up to n arrivals of the connections up so far, and returns them with the
// current epoch. Arrivals are in connection order, so those it may take are a prefix.
func (q *queue) take(n int) ([]arrival, uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	n = min(n, len(q.items))
	for i, a := range q.items[:n] {
		if a.conn > q.gen {
			n = i
			break
		}
	}
	out := make([]arrival, n)
	copy(out, q.items)
	rest := copy(q.items, q.items[n:])
	clear(q.items[rest:])
	q.items = q.items[:rest]
	return out, q.epoch
}

// delivery is a decoded message awaiting its outcome.
type delivery struct {
	arrival
	msg         inbox.Message
	redelivered bool
}

// hold is a key whose message awaits its retry: the key's later messages wait behind it.
type hold struct {
	head  *delivery
	due   time.Time
	later []*delivery
}

// pending is an unkeyed message awaiting its retry.
type pending struct {
	d   *delivery
	due time.Time
}

// loop applies the deliveries in order, one goroutine.
type loop struct {
	c       *Consumer
	q       *queue
	handler inbox.Handler
	epoch   uint64
	held    map[string]*hold
	unkeyed []pending
	// retryAt keeps, over a reconnect, when the messages that awaited a retry are due: the
	// broker redelivers them at once, and they wait out the rest of their delay.
	retryAt map[string]time.Time
}

func (l *loop) run(ctx context.Context) {
	for ctx.Err() == nil {
		worked := l.runDue(ctx, time.Now())
		items, epoch := l.q.take(l.c.cfg.Batch)
		if epoch != l.epoch {
			l.resumed(epoch)
		}
		if len(items) > 0 {
			l.arrive(ctx, items)
			continue
		}
		if worked {
			continue
		}
		wait := time.Hour
		if due, ok := l.nextDue(); ok {
			wait = time.Until(due)
		}
		t := time.NewTimer(wait)
		select {
		case <-l.q.notify:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// resumed drops the deliveries of earlier epochs, which the broker is resending, keeping
// when the retried ones are due.
func (l *loop) resumed(epoch uint64) {
	l.epoch = epoch
	// Everything held arrived before the reconnect (take returns a new epoch before any of
	// its arrivals): the broker resends it all.
	for k, h := range l.held {
		l.retryAt[h.head.msg.ID] = h.due
		delete(l.held, k)
	}
	for _, p := range l.unkeyed {
		l.retryAt[p.d.msg.ID] = p.due
	}
	l.unkeyed = nil
}

func (l *loop) nextDue() (time.Time, bool) {
	var next time.Time
	for _, h := range l.held {
		if next.IsZero() || h.due.Before(next) {
			next = h.due
		}
	}
	for _, p := range l.unkeyed {
		if next.IsZero() || p.due.Before(next) {
			next = p.due
		}
	}
	return next, !next.IsZero()
}

// runDue delivers again the messages whose retry is due; a key's held messages follow its
// head once it is through. It reports whether it did anything.
func (l *loop) runDue(ctx context.Context, now time.Time) bool {
	worked := false
	var keep []pending
	due := l.unkeyed
	l.unkeyed = nil
	for _, p := range due {
		if p.due.After(now) || ctx.Err() != nil {
			keep = append(keep, p)
			continue
		}
		worked = true
		l.process(ctx, []*delivery{p.d})
	}
	l.unkeyed = append(keep, l.unkeyed...)
	var keys []string
	for k, h := range l.held {
		if !h.due.After(now) {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		if ctx.Err() != nil {
			break
		}
		worked = true
		h := l.held[k]
		delete(l.held, k)
		l.process(ctx, []*delivery{h.head})
		if again := l.held[k]; again != nil {
			again.later = append(again.later, h.later...)
			continue
		}
		l.process(ctx, h.later)
	}
	return worked
}

// arrive decodes new arrivals, rejects the unreadable ones and delivers the others, except
// those of a key that awaits a retry, which wait behind it.
func (l *loop) arrive(ctx context.Context, items []arrival) {
	ds := make([]*delivery, 0, len(items))
	now := time.Now()
	for _, a := range items {
		msg, err := l.c.decode(a.pub)
		if err != nil {
			l.reject(ctx, a, msg, err)
			continue
		}
		d := &delivery{arrival: a, msg: msg, redelivered: a.pub.Duplicate()}
		if due, ok := l.retryAt[msg.ID]; ok {
			delete(l.retryAt, msg.ID)
			if due.After(now) {
				d.redelivered = true
				l.wait(d, due)
				continue
			}
		}
		if h := l.held[msg.Key]; msg.Key != "" && h != nil {
			h.later = append(h.later, d)
			continue
		}
		ds = append(ds, d)
	}
	l.process(ctx, ds)
}

// process delivers ds, in order: one by one, or in transactions of up to Batch.
func (l *loop) process(ctx context.Context, ds []*delivery) {
	for len(ds) > 0 && ctx.Err() == nil {
		n := min(len(ds), l.c.cfg.Batch)
		chunk := make([]*delivery, 0, n)
		for _, d := range ds[:n] {
			if h := l.held[d.msg.Key]; d.msg.Key != "" && h != nil {
				h.later = append(h.later, d) // an earlier message of its key failed
				continue
			}
			chunk = append(chunk, d)
		}
		ds = ds[n:]
		switch len(chunk) {
		case 0:
		case 1:
			d := chunk[0]
			o, err := l.c.in.Deliver(ctx, inbox.Delivery{Message: d.msg, Redelivered: d.redelivered}, l.handler)
			l.outcome(ctx, d, o, err)
		default:
			in := make([]inbox.Delivery, len(chunk))
			for i, d := range chunk {
				in[i] = inbox.Delivery{Message: d.msg, Redelivered: d.redelivered}
			}
			outs, err := l.c.in.DeliverBatch(ctx, in, l.handler)
			for i, d := range chunk {
				var o inbox.Outcome
				if err == nil {
					o = outs[i]
				}
				l.outcome(ctx, d, o, err)
			}
		}
	}
}

// outcome acks d after an ack outcome, or has it delivered again later.
func (l *loop) outcome(ctx context.Context, d *delivery, o inbox.Outcome, err error) {
	switch {
	case err != nil && ctx.Err() != nil:
		// Stopping: not acknowledged, so the broker redelivers it to the next session.
	case err != nil:
		l.c.log.WarnContext(ctx, "mqttinbox: the inbox failed; delivering again after a pause",
			"message_id", d.msg.ID, "pause", l.c.cfg.RetryPause, "error", err)
		l.wait(d, time.Now().Add(l.c.cfg.RetryPause))
	case o.Retry:
		if !errors.Is(o.Err, inbox.ErrKeyBlocked) {
			d.redelivered = true
			l.c.log.DebugContext(ctx, "mqttinbox: the handler failed; retrying", "message_id", d.msg.ID,
				"key", d.msg.Key, "attempt", o.Attempt, "delay", o.Delay, "error", o.Err)
		}
		l.wait(d, time.Now().Add(o.Delay))
	default:
		l.ack(ctx, d.arrival)
	}
}

// wait has d delivered again at due; a key's later messages wait behind it.
func (l *loop) wait(d *delivery, due time.Time) {
	if d.msg.Key == "" {
		l.unkeyed = append(l.unkeyed, pending{d, due})
		return
	}
	if h := l.held[d.msg.Key]; h != nil {
		h.later = append(h.later, d)
		return
	}
	l.held[d.msg.Key] = &hold{head: d, due: due}
}

// ack acknowledges a message. paho sends the PUBACKs in the order the messages arrived, as
// MQTT requires: an earlier message awaiting its retry holds back the later ones' PUBACKs.
func (l *loop) ack(ctx context.Context, a arrival) {
	if a.pub.QoS == 0 {
		return
	}
	if err := a.client.Ack(a.pub); err != nil {
		// The connection it came on is gone: the broker redelivers it, a Duplicate then.
		l.c.log.DebugContext(ctx, "mqttinbox: ack", "packet_id", a.pub.PacketID, "error", err)
	}
}

// reject records an unreadable message in the inbox's dead letters and acks it. While the
// inbox cannot record it, it retries every RetryPause (everything waits: the inbox's
// database is down for all the messages).
func (l *loop) reject(ctx context.Context, a arrival, msg inbox.Message, reason error) {
	msg.ID = rejectID(a.pub, msg.ID)
	if len(msg.Key) > inbox.MaxKeyBytes || !utf8.ValidString(msg.Key) {
		msg.Key = ""
	}
	msg.Position = max(msg.Position, 0)
	l.c.log.WarnContext(ctx, "mqttinbox: rejecting an unreadable message to the dead letters",
		"topic", a.pub.Topic, "message_id", msg.ID, "reason", reason)
	for {
		err := l.c.in.Reject(ctx, msg, reason)
		if err == nil {
			l.ack(ctx, a)
			return
		}
		if ctx.Err() != nil {
			return
		}
		l.c.log.WarnContext(ctx, "mqttinbox: rejecting failed; retrying", "message_id", msg.ID, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(l.c.cfg.RetryPause):
		}
	}
}

// rejectID is the id a rejected message is recorded under: its own id when it has a usable
// one, else "mqtt:<topic>:<hash>", a SHA-256 of the topic, content type, user properties and
// payload. The packet id would not do: the broker reuses packet ids once acknowledged, so two
// different unreadable messages would share one and the second would pass for a duplicate.
// The hash is the same for every redelivery of the message, and distinct for distinct
// content (two identical unreadable messages are one dead letter).
func rejectID(p *paho.Publish, id string) string {
	if id != "" && len(id) <= inbox.MaxIDBytes && utf8.ValidString(id) {
		return id
	}
	h := sha256.New()
	field := func(s []byte) {
		_ = binary.Write(h, binary.BigEndian, uint32(len(s)))
		_, _ = h.Write(s)
	}
	field([]byte(p.Topic))
	if p.Properties != nil {
		field([]byte(p.Properties.ContentType))
		for _, u := range p.Properties.User {
			field([]byte(u.Key))
			field([]byte(u.Value))
		}
	}
	field(p.Payload)
	sum := hex.EncodeToString(h.Sum(nil)[:16])
	if s := "mqtt:" + p.Topic + ":" + sum; len(s) <= inbox.MaxIDBytes && utf8.ValidString(s) {
		return s
	}
	return "mqtt:" + sum
}

// attributes are the CloudEvents attributes a user property may carry; every other user
// property is a user header (the sink refuses headers with these names).
var attributes = map[string]bool{
	"id": true, "source": true, "specversion": true, "type": true, "subject": true, "time": true,
	"datacontenttype": true, "dataschema": true, "outboxseq": true,
}

// decode reads the CloudEvents MQTT 5 binding (binary mode) back into a message: the topic
// without TopicPrefix and with TopicSeparator mapped back to ".", the Content Type property
// as datacontenttype, user properties as attributes or headers, the payload as the body.
func (c *Consumer) decode(p *paho.Publish) (inbox.Message, error) {
	env := inbox.Envelope{Attributes: map[string]string{}, Payload: p.Payload}
	topic, ok := strings.CutPrefix(p.Topic, c.cfg.TopicPrefix)
	if c.sep != "." {
		topic = strings.ReplaceAll(topic, c.sep, ".")
	}
	env.Topic = topic
	if p.Properties != nil {
		if ct := p.Properties.ContentType; ct != "" {
			env.Attributes["datacontenttype"] = ct
		}
		for _, u := range p.Properties.User {
			dst := env.Attributes
			if !attributes[u.Key] {
				if env.Headers == nil {
					env.Headers = map[string]string{}
				}
				dst = env.Headers
			}
			if _, dup := dst[u.Key]; dup {
				m, _ := env.Message()
				return m, fmt.Errorf("%w: user property %.64q appears twice", inbox.ErrInvalidMessage, u.Key)
			}
			dst[u.Key] = u.Value
		}
	}
	m, err := env.Message()
	if err == nil && !ok {
		err = fmt.Errorf("%w: topic %.64q is outside the topic prefix %.64q", inbox.ErrInvalidMessage, p.Topic, c.cfg.TopicPrefix)
	}
	return m, err
}
