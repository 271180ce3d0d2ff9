package amqp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/internal/unavail"
)

// ErrAuth is wrapped by the error New returns when RabbitMQ refuses the credentials in
// Config.URL (ACCESS_REFUSED during the handshake): a configuration the sink cannot work
// with, reported at start instead of retried. At runtime (the password changed on the
// broker after New) the sink keeps redialing, logs every refusal at ERROR, and Publish fails
// with sink.Unavailable errors until the broker accepts the credentials again.
var ErrAuth = errors.New("amqp sink: authentication refused")

// errBlocked is wrapped by the error of messages not sent while RabbitMQ blocks publishers.
var errBlocked = errors.New("RabbitMQ blocks publishing")

// isAuthErr reports whether err is RabbitMQ refusing the connection's credentials.
func isAuthErr(err error) bool {
	var aerr *amqp091.Error
	return errors.Is(err, amqp091.ErrCredentials) || errors.As(err, &aerr) && aerr.Code == amqp091.AccessRefused && strings.Contains(aerr.Reason, "ACCESS_REFUSED - Login")
}

// sinkWide reports whether a publish failure is the sink's as a whole rather than the
// message's. Sink-wide: not connected, the sink closed, the caller's context or the publish
// timeout ending, RabbitMQ blocking publishers (memory or disk alarm), a nack (a queue full
// with reject-publish, or the broker failing to store: backpressure, not the message), a
// connection or channel closed by the client library or the network, and the broker's
// closures that are about the sink's setup or the broker itself: 404 NOT_FOUND (the
// configured exchange is missing), 403 ACCESS_REFUSED, 320 CONNECTION_FORCED (broker
// shutting down), 530 NOT_ALLOWED, 506 RESOURCE_ERROR, 541 INTERNAL_ERROR. Not sink-wide:
// an unroutable message (its routing key has no queue: a per-topic matter, so pausing the
// whole sink would stop every other topic) and other broker closures (406 and the like,
// which may be this message's fault; the oversized message itself is permanent).
func sinkWide(err error) bool {
	if errors.Is(err, ErrUnroutable) {
		return false
	}
	var aerr *amqp091.Error
	if errors.As(err, &aerr) && aerr.Server {
		switch aerr.Code {
		case amqp091.NotFound, amqp091.AccessRefused, amqp091.ConnectionForced, amqp091.NotAllowed,
			amqp091.ResourceError, amqp091.InternalError:
			return true
		}
		return false
	}
	// Everything else is not the broker's verdict on a message: not connected, closed,
	// timeouts, a nack, blocked, network errors.
	return true
}

// markUnavailable wraps every sink-wide result of res with sink.Unavailable.
func markUnavailable(res []error) { unavail.Mark(res, sinkWide) }

// exchangeName quotes an exchange for error messages.
func exchangeName(exchange string) string {
	if exchange == "" {
		return "(the default exchange)"
	}
	return strconv.Quote(exchange)
}

// unroutable is the retryable error of a message the broker returned. Retryable so that
// nothing is lost while an operator binds a queue; the relay dead-letters it after its
// maximum attempts. Not Unavailable: a routing key without a queue is one topic's matter,
// and pausing the sink for it would hold back every other topic.
func unroutable(exchange, key string, code uint16, text string) error {
	what := fmt.Sprintf("no queue bound to exchange %s with routing key %q", exchangeName(exchange), key)
	if exchange == "" {
		what = fmt.Sprintf("no queue named %q (the default exchange routes to the queue named like the routing key)", key)
	}
	return fmt.Errorf("amqp sink: %w: %s (%d %s); will retry", ErrUnroutable, what, code, text)
}

// lost is the retryable error of a message whose confirmation will never come because its
// channel or connection closed.
func lost(cause error) error {
	return fmt.Errorf("amqp sink: no publisher confirm, the channel closed: %w", describe(cause))
}

// describe adds advice to the broker's channel and connection errors.
func describe(cause error) error {
	var aerr *amqp091.Error
	if !errors.As(cause, &aerr) {
		return cause
	}
	switch aerr.Code {
	case amqp091.NotFound:
		if strings.Contains(aerr.Reason, "no exchange") {
			return fmt.Errorf("%w (create the exchange, or set the sink's DeclareExchange)", cause)
		}
	case amqp091.AccessRefused:
		return fmt.Errorf("%w (grant the user write permission on the exchange)", cause)
	}
	return cause
}

// oversize reports the payload size of the message RabbitMQ rejected for exceeding its
// max_message_size. The broker closes the channel with 406 PRECONDITION_FAILED and the text
// "message size N is larger than configured max size M" (or "... than max size M").
func oversize(cause error) (int, bool) {
	var aerr *amqp091.Error
	if !errors.As(cause, &aerr) || aerr.Code != amqp091.PreconditionFailed {
		return 0, false
	}
	_, rest, ok := strings.Cut(aerr.Reason, "message size ")
	if !ok {
		return 0, false
	}
	num, rest, ok := strings.Cut(rest, " ")
	if !ok || !strings.HasPrefix(rest, "is larger than") {
		return 0, false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// tooLargeForBroker is the permanent error of a message over the broker's max_message_size.
// Every message of that size is over the limit, so each one in flight fails permanently.
func tooLargeForBroker(cause error) error {
	return sink.Permanent(fmt.Errorf("amqp sink: message larger than the broker's max_message_size "+
		"(lower the sink's MaxMessageBytes to match it, so such messages are refused before they close the channel): %w", cause))
}

// notSent wraps the reason a message was not sent at all.
func notSent(err error) error {
	return fmt.Errorf("amqp sink: not sent: %w", err)
}

// notConnected is the retryable error for messages not sent while the sink reconnects.
func notConnected(last error) error {
	if last == nil {
		return notSent(ErrNotConnected)
	}
	return fmt.Errorf("amqp sink: not sent: %w (last error: %v)", ErrNotConnected, describe(last))
}
