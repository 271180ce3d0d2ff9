package inbox

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Envelope is a delivered message in the CloudEvents binary content mode the sinks publish,
// as an adapter reads it off its broker's binding: the context attributes by their bare
// names (the binding's prefix removed, values decoded), the other headers, and the body.
type Envelope struct {
	// Topic is the outbox topic (the adapter maps the broker's subject, topic, routing key or
	// path back to it).
	Topic string
	// Attributes are the CloudEvents attributes: id, source, specversion, type, subject (the
	// message key), time, datacontenttype and the outboxseq extension (the position).
	Attributes map[string]string
	// Headers are the user headers.
	Headers map[string]string
	Payload []byte
}

// Message decodes e: ID from id, Type, Source, Key from subject, Time from time (RFC 3339),
// Position from outboxseq, and datacontenttype back into the "content-type" header it came
// from. It returns an error wrapping ErrInvalidMessage when a required attribute (id,
// specversion 1.0, type, source) is missing or one is malformed: the adapter then records the
// message with Reject rather than dropping it.
func (e Envelope) Message() (Message, error) {
	a := e.Attributes
	m := Message{ID: a["id"], Topic: e.Topic, Type: a["type"], Source: a["source"], Key: a["subject"], Payload: e.Payload}
	bad := func(format string, args ...any) (Message, error) {
		return m, fmt.Errorf("%w: %s", ErrInvalidMessage, fmt.Sprintf(format, args...))
	}
	switch {
	case m.ID == "":
		return bad("no id attribute")
	case a["specversion"] != "1.0":
		return bad("specversion %.32q, want 1.0", a["specversion"])
	case m.Type == "":
		return bad("no type attribute")
	case m.Source == "":
		return bad("no source attribute")
	}
	if v := a["time"]; v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return bad("time %.64q is not RFC 3339", v)
		}
		m.Time = t
	}
	if v := a["outboxseq"]; v != "" {
		p, err := strconv.ParseInt(v, 10, 64)
		if err != nil || p <= 0 {
			return bad("outboxseq %.32q is not a positive integer", v)
		}
		m.Position = p
	}
	if len(e.Headers) > 0 || a["datacontenttype"] != "" {
		m.Headers = make(map[string]string, len(e.Headers)+1)
		for k, v := range e.Headers {
			m.Headers[k] = v
		}
		if ct := a["datacontenttype"]; ct != "" {
			for k := range m.Headers {
				if strings.EqualFold(k, "content-type") {
					delete(m.Headers, k)
				}
			}
			m.Headers["content-type"] = ct
		}
	}
	if err := m.validate(); err != nil {
		return m, err
	}
	return m, nil
}
