package amqp

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox/sink"
)

// exchangeName quotes an exchange for error messages.
func exchangeName(exchange string) string {
	if exchange == "" {
		return "(the default exchange)"
	}
	return strconv.Quote(exchange)
}

// unroutable is the retryable error of a message the broker returned. Retryable so that
// nothing is lost while an operator binds a queue; the relay dead-letters it after its
// maximum attempts.
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
