package kafkainbox

import (
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxgo/outbox/inbox"
)

// Header names of the CloudEvents Kafka binding (binary content mode), as the Kafka sink
// writes them.
const (
	attrPrefix        = "ce_"
	headerContentType = "content-type" // datacontenttype
)

// decode reads the CloudEvents Kafka binding of r back into a Message: ce_<attribute>
// headers are the attributes, content-type is datacontenttype, other headers are the
// user's, the value is the payload. The error wraps inbox.ErrInvalidMessage; the Message
// then carries what could be read, for Reject.
func (c *Consumer) decode(r *kgo.Record) (inbox.Message, error) {
	topic, ok := c.topics[r.Topic]
	if !ok {
		topic = r.Topic
	}
	e := inbox.Envelope{Topic: topic, Attributes: make(map[string]string, 8), Payload: r.Value}
	var dup string
	for _, h := range r.Headers {
		name, v := h.Key, string(h.Value)
		var m map[string]string
		switch {
		case len(name) > len(attrPrefix) && strings.EqualFold(name[:len(attrPrefix)], attrPrefix):
			name, m = strings.ToLower(name[len(attrPrefix):]), e.Attributes
		case strings.EqualFold(name, headerContentType):
			name, m = "datacontenttype", e.Attributes
		default:
			if e.Headers == nil {
				e.Headers = make(map[string]string, len(r.Headers))
			}
			m = e.Headers
		}
		if _, ok := m[name]; ok && dup == "" {
			dup = h.Key
		}
		m[name] = v
	}
	msg, err := e.Message()
	if err == nil && dup != "" {
		// Two values for one name: which one the producer meant cannot be told.
		err = fmt.Errorf("%w: header %q appears more than once", inbox.ErrInvalidMessage, dup)
	}
	return msg, err
}
