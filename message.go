package outbox

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox/internal/envelope"
)

// DefaultMaxPayloadBytes is the payload limit used when a Writer sets none: 1 MiB, the default
// maximum message size of NATS and close to Kafka's.
const DefaultMaxPayloadBytes = 1 << 20

// Message is an event to publish. It is written to the outbox table inside the caller's
// transaction and published by the relay after that transaction commits.
type Message struct {
	// ID is the message_id: stable across retries and duplicates, the key consumers dedupe on.
	// Enqueue assigns a UUIDv7 when it is zero.
	ID uuid.UUID
	// Topic is the routing destination (a NATS subject, Kafka topic...). Required.
	Topic string
	// Key orders messages: messages with the same key are published in commit order.
	// Use the aggregate id (order id, user id). Empty means "no ordering needed".
	Key string
	// Type is the event type (CloudEvents "type"). Defaults to Topic when empty.
	Type string
	// Payload is the message body, published as is.
	Payload []byte
	// Headers are user headers published with the message. Names must be HTTP-token
	// characters, distinct in any letter case, and not reserved: the CloudEvents envelope's
	// names (ce-*, ce_*, cloudEvents:*, the bare attribute names id, source, type, ...) and
	// the headers a broker or HTTP interprets (Nats-*, CC, BCC, x-death, Host,
	// Content-Length, Connection, webhook-*, ...) are refused, see the README's list.
	// Values must be UTF-8 without CR, LF or NUL. "content-type" is the datacontenttype; it
	// must not be a CloudEvents structured-mode type (application/cloudevents...).
	Headers map[string]string
}

// Record is a message as stored in the outbox table, as the relay reads it.
type Record struct {
	Message
	// Seq is the row id: the relay's order.
	Seq int64
	// CreatedAt is when the row was inserted (database clock).
	CreatedAt time.Time
	// Attempts counts failed publish attempts so far.
	Attempts int
}

// EventType returns Type, or Topic when Type is empty.
func (m *Message) EventType() string {
	if m.Type != "" {
		return m.Type
	}
	return m.Topic
}

// NewID returns a new UUIDv7 message id. IDs sort by creation time.
func NewID() uuid.UUID {
	return uuid.Must(uuid.NewV7())
}

// validate checks m against the limits; index is the position in the Enqueue call.
func (m *Message) validate(index, maxPayload int) error {
	if reason := checkTopic(m.Topic); reason != "" {
		return &ValidationError{Index: index, Field: "topic", Reason: reason}
	}
	if len(m.Key) > 1024 {
		return &ValidationError{Index: index, Field: "key", Reason: "longer than 1024 bytes"}
	}
	if err := checkText(m.Key); err != "" {
		return &ValidationError{Index: index, Field: "key", Reason: err}
	}
	if len(m.Type) > 255 {
		return &ValidationError{Index: index, Field: "type", Reason: "longer than 255 bytes"}
	}
	if err := checkText(m.Type); err != "" {
		return &ValidationError{Index: index, Field: "type", Reason: err}
	}
	if len(m.Payload) > maxPayload {
		return &ValidationError{Index: index, Field: "payload",
			Reason: fmt.Sprintf("%d bytes exceeds the limit of %d bytes", len(m.Payload), maxPayload)}
	}
	if name, reason := envelope.Check(m.Headers); reason != "" {
		return &ValidationError{Index: index, Field: "headers", Reason: fmt.Sprintf("header %q: %s", name, reason)}
	}
	return nil
}

// CheckTopic returns why topic cannot be the Topic of a Message, or nil: it must be 1 to 255
// bytes of valid UTF-8 without control characters. Enqueue refuses such messages; a relay's
// topic filter (relay/poll) is checked with it too.
func CheckTopic(topic string) error {
	if reason := checkTopic(topic); reason != "" {
		return errors.New(reason)
	}
	return nil
}

func checkTopic(topic string) string {
	switch {
	case topic == "":
		return "must not be empty"
	case len(topic) > 255:
		return "longer than 255 bytes"
	}
	return checkText(topic)
}

// checkText rejects invalid UTF-8 and control characters, which no broker accepts in names.
func checkText(s string) string {
	if !utf8.ValidString(s) {
		return "is not valid UTF-8"
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "contains a control character"
		}
	}
	return ""
}
