// Package sink defines how the relay hands messages to a broker, and the CloudEvents envelope
// every sink puts around them.
//
// A Sink publishes a batch and reports one result per message. The relay deletes (or marks) a
// message only after its result is nil, which a sink must return only once the broker has
// acknowledged the message durably (JetStream PubAck, Kafka acks=all, publisher confirm, 2xx).
//
// Errors are retryable unless wrapped with Permanent: a retryable failure is tried again with
// backoff, a permanent one goes straight to the dead-letter table with its reason.
package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/ascii"
)

// Sink publishes messages to one broker. Implementations are safe for concurrent use.
type Sink interface {
	// Publish sends msgs and waits for the broker's acknowledgements. It returns a slice of
	// len(msgs) errors: nil for an acknowledged message, else why it failed. Messages of one
	// key appear in msgs in order and must be sent in that order. Publish must return when ctx
	// ends, reporting unacknowledged messages as failed with ctx's error.
	Publish(ctx context.Context, msgs []*outbox.Record) []error
	// Close releases the sink's connections.
	Close() error
}

// ErrPermanent is wrapped by errors that retrying cannot fix (message too large, rejected by
// the broker, no route). Check with IsPermanent.
var ErrPermanent = errors.New("permanent failure")

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() []error {
	return []error{e.err, ErrPermanent}
}

// Permanent marks err as not worth retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// Permanentf is Permanent(fmt.Errorf(format, args...)).
func Permanentf(format string, args ...any) error {
	return Permanent(fmt.Errorf(format, args...))
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

// FailAll returns a result slice of n copies of err, for a batch that failed as a whole.
func FailAll(n int, err error) []error {
	res := make([]error, n)
	for i := range res {
		res[i] = err
	}
	return res
}

// SpecVersion is the CloudEvents version of the envelope.
const SpecVersion = "1.0"

// Attribute is one CloudEvents context attribute, named without any binding prefix.
type Attribute struct {
	Name  string // id, source, specversion, type, subject, time, datacontenttype
	Value string
}

// Attributes returns the CloudEvents attributes of r in binary content mode: id=message_id,
// source, specversion, type, subject=key (omitted when empty), time=created_at, and
// datacontenttype when the user set a "content-type" header. Each sink maps them to its
// broker's binding (NATS/HTTP "ce-" headers, Kafka "ce_" headers, AMQP "cloudEvents:").
func Attributes(r *outbox.Record, source string) []Attribute {
	attrs := make([]Attribute, 0, 7)
	attrs = append(attrs,
		Attribute{"id", r.ID.String()},
		Attribute{"source", source},
		Attribute{"specversion", SpecVersion},
		Attribute{"type", r.EventType()},
	)
	if r.Key != "" {
		attrs = append(attrs, Attribute{"subject", r.Key})
	}
	if !r.CreatedAt.IsZero() {
		attrs = append(attrs, Attribute{"time", r.CreatedAt.UTC().Format(time.RFC3339Nano)})
	}
	for name, v := range r.Headers {
		if ascii.EqualFold(name, "content-type") {
			attrs = append(attrs, Attribute{"datacontenttype", v})
		}
	}
	return attrs
}
