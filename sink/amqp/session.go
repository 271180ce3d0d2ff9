package amqp

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
)

// session is one connection with its confirm-mode channel. It dies as a whole: when the
// channel or the connection closes, every message waiting for its confirmation fails
// retryably and the sink dials a new session.
type session struct {
	conn *amqp091.Connection
	ch   *amqp091.Channel
	sem  chan struct{} // held by the batch sending on ch: delivery tags follow send order

	mu      sync.Mutex
	tags    map[uint64]slotRef     // delivery tag → message waiting for its confirmation; nil once dead
	returns map[returnKey]returned // basic.returns whose ack has not been read yet
	err     error                  // why the session died
	blocked string                 // the broker's connection.blocked reason, "" when not blocked

	dead      chan struct{} // closed once the session died and its waiting messages failed
	done      chan struct{} // closed when the reader returned
	closeOnce sync.Once
}

// slotRef names a message of a batch.
type slotRef struct {
	b *batch
	i int
}

type returnKey struct{ id, key string }

type returned struct {
	n    int
	code uint16
	text string
}

// read is the session's only consumer of broker notifications. It must never block for
// long: the library gives a listener five seconds before it drops a notification.
//
// Unroutable messages: with mandatory=true the broker sends basic.return and then the
// basic.ack of the same message. The library dispatches both from one goroutine in that
// order, handing the return over on an unbuffered channel, so the return has been received
// here, and is recorded before the next select, before the ack can be read. The ack of a
// message with a pending return for its id and routing key is then reported as unroutable.
func (ss *session) read(confirms <-chan amqp091.Confirmation, returns <-chan amqp091.Return,
	chClose, connClose <-chan *amqp091.Error, blocked <-chan amqp091.Blocking, log *slog.Logger) {
	defer close(ss.done)
	var cause error
	for {
		select {
		case c, ok := <-confirms:
			if !ok {
				// The channel is closed: every confirmation it delivered was handled above.
				// Its close reason, if any, was sent before the listeners were closed.
				select {
				case e := <-chClose:
					if e != nil {
						cause = e
					}
				default:
				}
				select {
				case e := <-connClose:
					if e != nil && cause == nil {
						cause = e
					}
				default:
				}
				if cause == nil {
					cause = amqp091.ErrClosed
				}
				ss.end(cause)
				return
			}
			ss.confirm(c)
		case r, ok := <-returns:
			if !ok {
				returns = nil
				continue
			}
			ss.mu.Lock()
			k := returnKey{r.MessageId, r.RoutingKey}
			e := ss.returns[k]
			e.n++
			e.code, e.text = r.ReplyCode, r.ReplyText
			ss.returns[k] = e
			ss.mu.Unlock()
		case e, ok := <-chClose:
			if !ok {
				chClose = nil
			} else if e != nil {
				cause = e
			}
		case e, ok := <-connClose:
			if !ok {
				connClose = nil
			} else if e != nil && cause == nil {
				cause = e
			}
		case b, ok := <-blocked:
			if !ok {
				blocked = nil
				continue
			}
			ss.mu.Lock()
			if b.Active {
				ss.blocked = b.Reason
				if ss.blocked == "" {
					ss.blocked = "no reason given"
				}
			} else {
				ss.blocked = ""
			}
			ss.mu.Unlock()
			if b.Active {
				log.Warn("amqp sink: RabbitMQ blocked publishing", "reason", b.Reason)
			} else {
				log.Info("amqp sink: RabbitMQ unblocked publishing")
			}
		}
	}
}

// confirm settles the message of one delivery tag.
func (ss *session) confirm(c amqp091.Confirmation) {
	ss.mu.Lock()
	ref, ok := ss.tags[c.DeliveryTag]
	if !ok {
		ss.mu.Unlock()
		return
	}
	delete(ss.tags, c.DeliveryTag)
	var ret returned
	if len(ss.returns) > 0 {
		k := returnKey{ref.b.ids[ref.i], ref.b.keys[ref.i]}
		if e, found := ss.returns[k]; found {
			ret = e
			if e.n--; e.n == 0 {
				delete(ss.returns, k)
			} else {
				ss.returns[k] = e
			}
		}
	}
	ss.mu.Unlock()

	var err error
	switch {
	case ret.n > 0:
		err = unroutable(ref.b.exchange, ref.b.keys[ref.i], ret.code, ret.text)
	case !c.Ack:
		err = fmt.Errorf("amqp sink: publishing to exchange %s with routing key %q: %w "+
			"(a queue with x-overflow=reject-publish is full, or the broker could not store it); will retry",
			exchangeName(ref.b.exchange), ref.b.keys[ref.i], ErrNacked)
	}
	ref.b.Confirm(ref.i, err)
}

// end fails every message still waiting for a confirmation and marks the session dead.
func (ss *session) end(cause error) {
	ss.mu.Lock()
	ss.err = cause
	tags := ss.tags
	ss.tags = nil
	ss.returns = nil
	ss.mu.Unlock()
	tooLarge, hasSize := oversize(cause)
	for _, ref := range tags {
		var err error
		if hasSize && len(ref.b.msgs[ref.i].Payload) == tooLarge {
			err = tooLargeForBroker(cause)
		} else {
			err = lost(cause)
		}
		ref.b.Confirm(ref.i, err)
	}
	close(ss.dead)
}

// reason returns why the session died.
func (ss *session) reason() error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.err
}

// blockedReason returns why the broker blocks publishing, or "".
func (ss *session) blockedReason() string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.blocked
}

// register records that the message ref is about to be published with tag. It reports false
// when the session is dead.
func (ss *session) register(tag uint64, ref slotRef) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.tags == nil {
		return false
	}
	ss.tags[tag] = ref
	return true
}

// unregister forgets tag after a failed publish. It reports whether tag was still waiting
// (the reader may have failed it already).
func (ss *session) unregister(tag uint64) bool {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, ok := ss.tags[tag]; !ok {
		return false
	}
	delete(ss.tags, tag)
	return true
}

// close closes the connection and waits for the reader.
func (ss *session) close() {
	ss.closeOnce.Do(func() {
		if err := ss.conn.CloseDeadline(time.Now().Add(time.Second)); err != nil && !errors.Is(err, amqp091.ErrClosed) {
			_ = err // the connection is gone either way
		}
		<-ss.done
	})
}
