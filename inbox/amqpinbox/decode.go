package amqpinbox

import (
	"fmt"
	"strings"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox/inbox"
)

// Application-property prefixes of the CloudEvents AMQP binding: "cloudEvents:" as the
// sink writes it, and "cloudEvents_", the binding's alternative for JMS-style brokers.
var attrPrefixes = []string{"cloudEvents:", "cloudEvents_"}

// decode reads the CloudEvents AMQP binding of d back into a Message: cloudEvents:*
// application properties are the attributes, the content-type property is
// datacontenttype, other headers are the user's (non-string values in their fmt form),
// the body is the payload, and the routing key maps back to the topic. The error wraps
// inbox.ErrInvalidMessage; the Message then carries what could be read, for Reject.
func (c *Consumer) decode(d amqp091.Delivery) (inbox.Message, error) {
	e := inbox.Envelope{Topic: c.topic(d.RoutingKey), Attributes: make(map[string]string, 8), Payload: d.Body}
	var bad string
	for name, v := range d.Headers {
		s, ok := text(v)
		attr := ""
		for _, p := range attrPrefixes {
			if len(name) > len(p) && strings.EqualFold(name[:len(p)], p) {
				attr = strings.ToLower(name[len(p):])
			}
		}
		if attr == "" {
			if e.Headers == nil {
				e.Headers = make(map[string]string, len(d.Headers))
			}
			e.Headers[name] = s
			continue
		}
		if !ok && bad == "" {
			bad = fmt.Sprintf("attribute %s is a %T, not a string", name, v)
		}
		if _, dup := e.Attributes[attr]; dup && bad == "" {
			bad = fmt.Sprintf("attribute %s given twice", attr)
		}
		e.Attributes[attr] = s
	}
	if d.ContentType != "" {
		e.Attributes["datacontenttype"] = d.ContentType
	}
	msg, err := e.Message()
	if err == nil && bad != "" {
		err = fmt.Errorf("%w: %s", inbox.ErrInvalidMessage, bad)
	}
	return msg, err
}

// text returns a header value as a string; ok is false when it was not one (a string or
// bytes).
func text(v any) (s string, ok bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case []byte:
		return string(v), true
	default:
		return fmt.Sprint(v), false
	}
}
