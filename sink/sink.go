// Package sink defines how the relay hands messages to a broker, and the CloudEvents envelope
// every sink puts around them.
//
// A Sink publishes a batch and reports one result per message. The relay deletes (or marks) a
// message only after its result is nil, which a sink must return only once the broker has
// acknowledged the message durably (JetStream PubAck, Kafka acks=all, publisher confirm, 2xx).
//
// Errors are retryable unless wrapped with Permanent or Unavailable: a retryable failure is
// tried again with backoff and counts toward the message's attempts, a permanent one goes
// straight to the dead-letter table with its reason, and an Unavailable one says the sink as a
// whole cannot publish now (broker down, refused, authentication, missing stream): the relay
// pauses the sink and probes it, and spends none of the message's attempts. A result wrapping
// ErrDuplicate is a success the broker reported as a duplicate of a message it already held.
package sink

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/ascii"
	"github.com/outboxgo/outbox/internal/envelope"
)

// Sink publishes messages to one broker. Implementations are safe for concurrent use.
type Sink interface {
	// Publish sends msgs and waits for the broker's acknowledgements. It returns a slice of
	// len(msgs) errors: nil for an acknowledged message, else why it failed. A result wrapping
	// ErrDuplicate (see Duplicate) is acknowledged too: the broker said it already held a
	// message with this id. Failures of the sink as a whole (not connected, connection
	// refused, authentication, broker timeout, missing stream or exchange) are wrapped with
	// Unavailable. Messages of one key appear in msgs in order and must be sent in that order.
	// Publish must return when ctx ends, reporting unacknowledged messages as failed with
	// ctx's error.
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

// ErrUnavailable is wrapped by errors that say the sink as a whole cannot publish now: not
// connected, connection refused or reset, authentication or authorization refused, a timeout
// talking to the broker, a missing stream, exchange or topic the configuration names. None is
// the message's fault: the relay pauses the sink, probes it with capped backoff and spends no
// attempt of the message, so an outage of any length dead-letters nothing. Check with
// IsUnavailable.
var ErrUnavailable = errors.New("sink unavailable")

type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() []error {
	return []error{e.err, ErrUnavailable}
}

// Unavailable marks err as a failure of the sink as a whole (see ErrUnavailable). It returns
// nil for nil, and err itself when it is already marked Permanent (a permanent rejection of a
// message stays the message's).
func Unavailable(err error) error {
	if err == nil || IsPermanent(err) || IsUnavailable(err) {
		return err
	}
	return &unavailableError{err: err}
}

// Unavailablef is Unavailable(fmt.Errorf(format, args...)).
func Unavailablef(format string, args ...any) error {
	return Unavailable(fmt.Errorf(format, args...))
}

// IsUnavailable reports whether err was marked with Unavailable (and not Permanent).
func IsUnavailable(err error) bool {
	return errors.Is(err, ErrUnavailable) && !IsPermanent(err)
}

// ErrDuplicate is wrapped by the result of a message the broker acknowledged as a duplicate of
// one it already held with the same id (JetStream's PubAck.Duplicate). The message counts as
// delivered; the relay counts and logs it, because besides a harmless republish after a crash
// it can mean a producer reused an id for a different message, whose payload the broker
// dropped. Check with IsDuplicate.
var ErrDuplicate = errors.New("broker reported a duplicate")

// Duplicate returns a result for a message the broker acknowledged as a duplicate; detail
// (may be empty) says what the broker answered, e.g. "stream ORDERS, sequence 42".
func Duplicate(detail string) error {
	if detail == "" {
		return ErrDuplicate
	}
	return fmt.Errorf("%w: %s", ErrDuplicate, detail)
}

// IsDuplicate reports whether a result says the broker acknowledged the message as a
// duplicate (a success).
func IsDuplicate(err error) bool { return errors.Is(err, ErrDuplicate) }

// RetryAfter is an optional interface of the errors a sink returns: an error that knows when
// the broker wants the message again (an HTTP 429 or 503 with a Retry-After header, a broker's
// throttle time) implements it, anywhere in its chain (errors.As finds it). The relay then
// schedules the retry no sooner than RetryAfter() after the attempt, and no later than its
// Config.BackoffMax; an error without it gets the relay's jittered exponential backoff. It
// applies to retryable errors only: Permanent ones are dead-lettered, Unavailable ones wait
// for the sink's probe.
type RetryAfter interface {
	// RetryAfter is how long the broker asked to wait before the next attempt.
	RetryAfter() time.Duration
}

// Destinations is implemented by sinks that send topics to several destinations (package
// route): Destination names the one a topic goes to ("" when none), so the relay pauses only
// the destination that is unavailable while the others flow.
type Destinations interface {
	Destination(topic string) string
}

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
	Name  string // id, source, specversion, type, subject, time, datacontenttype, outboxseq
	Value string
}

// SeqAttribute is the CloudEvents extension attribute that carries a message's position in
// its key's order: outbox.Record.Seq in decimal (the outbox row id in poll, table and binlog
// mode; the commit LSN in WAL logical mode). It grows along a key's delivery order, so a
// consumer (an inbox) can tell a late duplicate from a newer message. Bindings spell it
// ce-outboxseq (NATS, HTTP), ce_outboxseq (Kafka), cloudEvents:outboxseq (AMQP) and plain
// outboxseq (MQTT user property, Redis entry field). It is absent when Seq <= 0.
const SeqAttribute = "outboxseq"

// Attributes returns the CloudEvents attributes of r in binary content mode: id=message_id,
// source, specversion, type, subject=key (omitted when empty), time=created_at,
// datacontenttype when the user set a "content-type" header (absent otherwise: a sink must
// not invent one), and the extension outboxseq=Seq in decimal (SeqAttribute; omitted when
// Seq <= 0). Each sink maps them to its broker's binding (NATS "ce-" headers and HTTP
// "ce-" headers, values through PercentEncode; Kafka "ce_" headers; AMQP "cloudEvents:"
// properties; MQTT user properties), after CheckHeaders accepted the user's headers.
func Attributes(r *outbox.Record, source string) []Attribute {
	attrs := make([]Attribute, 0, 8)
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
	if r.Seq > 0 {
		attrs = append(attrs, Attribute{SeqAttribute, strconv.FormatInt(r.Seq, 10)})
	}
	return attrs
}

// CheckHeaders returns a permanent error when a user header of r breaks the header rules of
// the library (see outbox.Message.Headers): a name outside the HTTP token characters, a
// name reserved for the CloudEvents envelope or interpreted by a broker or by HTTP (ce-*,
// ce_*, cloudEvents:*, the bare attribute names, Nats-*, CC, BCC, x-death, Host,
// Content-Length, Connection, webhook-*, ...; in any letter case), two names that differ
// only in case, a value with CR, LF, NUL or invalid UTF-8, or a content-type of the
// CloudEvents structured mode (application/cloudevents...). Enqueue refuses such messages;
// sinks call CheckHeaders for rows inserted by other means, before mapping the headers, so
// that no row can reach the broker's control plane or speak for the envelope. It returns nil,
// without allocating, for a valid set.
func CheckHeaders(r *outbox.Record) error {
	if len(r.Headers) == 0 {
		return nil
	}
	if name, reason := envelope.Check(r.Headers); reason != "" {
		return Permanentf("header %.64q: %s", name, reason)
	}
	return nil
}

// PercentEncode encodes an attribute value for a header of the CloudEvents HTTP and NATS
// bindings in binary mode (HTTP 3.1.3.2, NATS 3.1.3.2): space, double quote, percent and
// every byte outside printable ASCII become %XY of its UTF-8 encoding, upper-case hex.
// A spec decoder percent-decodes once. A value that needs no encoding is returned as is,
// without allocating.
func PercentEncode(v string) string {
	i := 0
	for ; i < len(v); i++ {
		if needsPercent(v[i]) {
			break
		}
	}
	if i == len(v) {
		return v
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(v)+16)
	b = append(b, v[:i]...)
	for ; i < len(v); i++ {
		c := v[i]
		if needsPercent(c) {
			b = append(b, '%', hex[c>>4], hex[c&0xf])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func needsPercent(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '"' || c == '%'
}
