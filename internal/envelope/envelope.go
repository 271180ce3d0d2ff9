// Package envelope holds the rules for the headers a message may carry. The library's
// validation (outbox.Enqueue) and every sink (through sink.CheckHeaders) apply the same
// rules, so a header Enqueue accepts is one every sink publishes, and a row inserted with
// plain SQL that breaks them is refused by whichever sink gets it.
//
// A user header must not be able to speak for the envelope or for the broker: names the
// CloudEvents bindings use for context attributes, and names a broker or HTTP interprets
// (JetStream's Nats-* headers, RabbitMQ's CC/BCC and x-death family, HTTP framing and
// hop-by-hop headers, the Standard Webhooks headers) are refused, in any letter case.
//
// HeadersJSON is the one encoding of headers for the tables' headers columns.
package envelope

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxNameLen is the longest header name accepted.
const MaxNameLen = 256

// Class names why a header name is reserved.
type Class string

// The classes of reserved header names.
const (
	CloudEvents Class = "the CloudEvents envelope" // ce-, ce_, cloudEvents:, cloudEvents_ and bare attribute names (outboxseq included)
	JetStream   Class = "NATS JetStream"           // Nats-*
	RabbitMQ    Class = "RabbitMQ"                 // CC, BCC, x-death, x-delay, ...
	HTTP        Class = "HTTP"                     // framing and hop-by-hop headers
	Webhooks    Class = "Standard Webhooks"        // webhook-*
)

// prefixes are the reserved name prefixes, lower case.
var prefixes = []struct {
	prefix string
	class  Class
	what   string
}{
	{"ce-", CloudEvents, "the ce- prefix carries CloudEvents attributes (NATS and HTTP bindings)"},
	{"ce_", CloudEvents, "the ce_ prefix carries CloudEvents attributes (Kafka binding)"},
	{"cloudevents:", CloudEvents, "the cloudEvents: prefix carries CloudEvents attributes (AMQP binding)"},
	{"cloudevents_", CloudEvents, "the cloudEvents_ prefix carries CloudEvents attributes (AMQP binding)"},
	{"nats-", JetStream, "Nats-* headers control JetStream (dedupe id, expected sequence, rollup, TTL, schedules)"},
	{"webhook-", Webhooks, "webhook-* headers carry the Standard Webhooks id, timestamp and signature"},
	{"x-first-death-", RabbitMQ, "RabbitMQ writes x-first-death-* when it dead-letters"},
	{"x-last-death-", RabbitMQ, "RabbitMQ writes x-last-death-* when it dead-letters"},
}

// names are the reserved names, lower case.
var names = map[string]struct {
	class Class
	what  string
}{
	// Context attributes: the MQTT binding and the Redis entry fields use them unprefixed.
	"id":              {CloudEvents, "a CloudEvents attribute name (MQTT binding: user properties are attributes)"},
	"source":          {CloudEvents, "a CloudEvents attribute name (MQTT binding: user properties are attributes)"},
	"specversion":     {CloudEvents, "a CloudEvents attribute name (MQTT binding: user properties are attributes)"},
	"type":            {CloudEvents, "a CloudEvents attribute name (MQTT binding: user properties are attributes)"},
	"subject":         {CloudEvents, "a CloudEvents attribute name (MQTT binding: user properties are attributes)"},
	"time":            {CloudEvents, "a CloudEvents attribute name (MQTT binding: user properties are attributes)"},
	"datacontenttype": {CloudEvents, "a CloudEvents attribute name; set content-type instead"},
	"dataschema":      {CloudEvents, "a CloudEvents attribute name (MQTT binding: user properties are attributes)"},
	"outboxseq":       {CloudEvents, "the envelope's outboxseq extension, the message's per-key position (MQTT user property, Redis field)"},
	"data":            {CloudEvents, "the payload field of the envelope"},
	"data_base64":     {CloudEvents, "the payload field of the envelope"},
	// RabbitMQ: sender-selected distribution routes to every routing key in CC and BCC; the
	// others are read by the broker or its common plugins.
	"cc":                     {RabbitMQ, "RabbitMQ routes the message to the routing keys in CC (sender-selected distribution)"},
	"bcc":                    {RabbitMQ, "RabbitMQ routes the message to the routing keys in BCC (sender-selected distribution)"},
	"x-death":                {RabbitMQ, "RabbitMQ's dead-letter history"},
	"x-delay":                {RabbitMQ, "the delayed-message exchange holds the message back"},
	"x-delivery-count":       {RabbitMQ, "quorum queues count redeliveries in it"},
	"x-deduplication-header": {RabbitMQ, "the message-deduplication plugin drops repeats of its value"},
	"x-cache-ttl":            {RabbitMQ, "the message-deduplication plugin reads it"},
	"x-stream-filter-value":  {RabbitMQ, "streams filter on it"},
	// HTTP framing and hop-by-hop headers (RFC 9110 7.6.1, 9112): set by the transport.
	"host":                {HTTP, "HTTP framing, set by the transport"},
	"content-length":      {HTTP, "HTTP framing, set by the transport"},
	"transfer-encoding":   {HTTP, "HTTP framing, set by the transport"},
	"trailer":             {HTTP, "HTTP framing, set by the transport"},
	"expect":              {HTTP, "HTTP framing, set by the transport"},
	"connection":          {HTTP, "an HTTP hop-by-hop header"},
	"keep-alive":          {HTTP, "an HTTP hop-by-hop header"},
	"proxy-connection":    {HTTP, "an HTTP hop-by-hop header"},
	"proxy-authenticate":  {HTTP, "an HTTP hop-by-hop header"},
	"proxy-authorization": {HTTP, "an HTTP hop-by-hop header"},
	"te":                  {HTTP, "an HTTP hop-by-hop header"},
	"upgrade":             {HTTP, "an HTTP hop-by-hop header"},
}

// Reserved reports whether name (in any letter case) is reserved, and why.
func Reserved(name string) (Class, string, bool) {
	if len(name) > MaxNameLen {
		return "", "", false
	}
	var buf [MaxNameLen]byte
	lower := buf[:len(name)]
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	if n, ok := names[string(lower)]; ok { // no allocation: the conversion is only a lookup key
		return n.class, n.what, true
	}
	for _, p := range prefixes {
		if len(lower) >= len(p.prefix) && string(lower[:len(p.prefix)]) == p.prefix {
			return p.class, p.what, true
		}
	}
	return "", "", false
}

// NonToken returns the first byte of name that is not an RFC 9110 token character (the
// characters of HTTP field names), and whether there is one.
func NonToken(name string) (byte, bool) {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return c, true
		}
	}
	return 0, false
}

// CheckName returns why name cannot be a user header, or "" when it can: it must be
// 1..MaxNameLen RFC 9110 token characters and not reserved.
func CheckName(name string) string {
	if name == "" {
		return "empty"
	}
	if len(name) > MaxNameLen {
		return fmt.Sprintf("longer than %d bytes", MaxNameLen)
	}
	if c, ok := NonToken(name); ok {
		return fmt.Sprintf("character %q not allowed (HTTP token characters only)", c)
	}
	if class, what, ok := Reserved(name); ok {
		return fmt.Sprintf("reserved for %s: %s", class, what)
	}
	return ""
}

// CheckValue returns why v cannot be a header value, or "" when it can: valid UTF-8 without
// CR, LF or NUL (which would end the header, or the protocol line, early and let the rest
// be read as another header).
func CheckValue(v string) string {
	if !utf8.ValidString(v) {
		return "value is not valid UTF-8"
	}
	if strings.ContainsAny(v, "\r\n\x00") {
		return "value contains CR, LF or NUL"
	}
	return ""
}

// CheckContentType returns why v cannot be the content-type header (the datacontenttype),
// or "" when it can. The relay publishes in binary mode, and every binding (HTTP, Kafka,
// AMQP, MQTT, NATS) tells a receiver that a content type of the structured mode
// (application/cloudevents, application/cloudevents+json, application/cloudevents-batch...,
// in any letter case) means the payload is the envelope: such a message would be misread.
func CheckContentType(v string) string {
	const structured = "application/cloudevents"
	v = strings.TrimLeft(v, " \t")
	if len(v) >= len(structured) && strings.EqualFold(v[:len(structured)], structured) {
		return "a content type of the CloudEvents structured mode: receivers would read the payload as the envelope (the relay publishes in binary mode)"
	}
	return ""
}

// Check returns the first header of h that breaks the rules and why, or "", "" when all
// keep them. Besides CheckName, CheckValue and CheckContentType it refuses two names that
// differ only in letter case: most bindings fold case, so one would overwrite the other.
func Check(h map[string]string) (name, reason string) {
	for k, v := range h {
		if r := CheckName(k); r != "" {
			return k, r
		}
		if r := CheckValue(v); r != "" {
			return k, r
		}
		if len(k) == len("content-type") && strings.EqualFold(k, "content-type") {
			if r := CheckContentType(v); r != "" {
				return k, r
			}
		}
	}
	if len(h) < 2 {
		return "", ""
	}
	if len(h) <= 16 {
		// Pairwise, without allocating: header sets are small.
		var keys [16]string
		n := 0
		for k := range h {
			keys[n] = k
			n++
		}
		for i := 0; i < n; i++ {
			for j := i + 1; j < n; j++ {
				if strings.EqualFold(keys[i], keys[j]) {
					return keys[j], fmt.Sprintf("differs from header %q only in letter case", keys[i])
				}
			}
		}
		return "", ""
	}
	seen := make(map[string]string, len(h))
	for k := range h {
		lower := strings.ToLower(k)
		if prev, ok := seen[lower]; ok {
			return k, fmt.Sprintf("differs from header %q only in letter case", prev)
		}
		seen[lower] = k
	}
	return "", ""
}
