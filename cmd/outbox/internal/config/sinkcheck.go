package config

import (
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/outboxgo/outbox/internal/envelope"
	"github.com/outboxgo/outbox/internal/hostport"
)

// The checks of each sink block follow the rules of its sink package's constructor, so that
// a mistake is reported before anything starts, named by its YAML path. Only the block of a
// sink in use is checked. The constructors still check everything; the command names their
// errors by YAML path as well.
//
// Errors never quote a Secret, and quote no URL: URLs may carry passwords or tokens.

// typeField returns the path of the type setting of the block whose sub-block prefix is p:
// "sink.kafka." → "sink.type".
func typeField(p string) string {
	p = strings.TrimSuffix(p, ".")
	return p[:strings.LastIndexByte(p, '.')+1] + "type"
}

func requiredFor(p, typ string) error {
	return fmt.Errorf("required when %s is %s", typeField(p), typ)
}

func (n *NATS) validate(p string) error {
	if strings.TrimSpace(string(n.URL)) == "" {
		return invalid(p+"url", "%s", requiredFor(p, SinkNATS))
	}
	for u := range strings.SplitSeq(string(n.URL), ",") {
		if reason := checkNATSURL(strings.TrimSpace(u)); reason != "" {
			return invalid(p+"url", "%s", reason)
		}
	}
	if n.SubjectPrefix != "" {
		// A prefix is valid when some topic can follow it.
		if reason := checkSubject(n.SubjectPrefix+"x", false); reason != "" {
			return invalid(p+"subject_prefix", "%q %s", n.SubjectPrefix, reason)
		}
	}
	if n.Source == "" {
		return invalid(p+"source", "must not be empty")
	}
	if hasControl(n.Source) {
		return invalid(p+"source", "contains a control character")
	}
	if hasControl(n.Name) {
		return invalid(p+"name", "contains a control character")
	}
	if n.MaxPending < 1 {
		return invalid(p+"max_pending", "must be positive")
	}
	if n.ReconnectWait <= 0 {
		return invalid(p+"reconnect_wait", "must be positive")
	}
	if n.Stream == "" {
		if len(n.StreamSubjects) > 0 {
			return invalid(p+"stream_subjects", "set without %sstream", p)
		}
		return nil
	}
	if reason := checkStreamName(n.Stream); reason != "" {
		return invalid(p+"stream", "%q %s", n.Stream, reason)
	}
	for _, s := range n.StreamSubjects {
		if reason := checkSubject(s, true); reason != "" {
			return invalid(p+"stream_subjects", "%q %s", s, reason)
		}
	}
	if len(n.EffectiveStreamSubjects()) == 0 {
		return invalid(p+"stream_subjects", "required when %sstream is set and %ssubject_prefix does not end with \".\"", p, p)
	}
	return nil
}

func checkNATSURL(s string) string {
	if s == "" {
		return "empty server address in the list"
	}
	raw := s
	if !strings.Contains(s, "://") {
		raw = "nats://" + s // as the NATS client does
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Sprintf("%s: %s", redact(s), urlErr(err))
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Sprintf("%s: scheme must be nats, tls, ws or wss", redact(s))
	}
	if u.Hostname() == "" {
		return fmt.Sprintf("%s: no host", redact(s))
	}
	return ""
}

// urlErr is why url.Parse failed, without the URL it quotes.
func urlErr(err error) string {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return uerr.Err.Error()
	}
	return "not a valid URL"
}

// checkSubject follows the NATS server's rules: dot-separated non-empty tokens without
// whitespace or control characters; wildcard tokens (* and a final >) only when allowed.
func checkSubject(s string, wildcards bool) string {
	if len(s) > 3840 {
		return "is longer than 3840 bytes"
	}
	tokens := strings.Split(s, ".")
	for i, tok := range tokens {
		switch {
		case tok == "":
			return "has an empty token (leading, trailing or double dot)"
		case strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			return "contains whitespace or a control character"
		case tok == "*" || tok == ">":
			if !wildcards {
				return "contains a wildcard token (* or >)"
			}
			if tok == ">" && i != len(tokens)-1 {
				return "has > before the last token"
			}
		}
	}
	return ""
}

// checkStreamName follows JetStream's rules for stream names.
func checkStreamName(s string) string {
	if len(s) > 255 {
		return "is longer than 255 bytes"
	}
	if strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune(".*>/\\", r)
	}) {
		return "must not contain whitespace, control characters, '.', '*', '>', '/' or '\\'"
	}
	return ""
}

// Kafka's limits (franz-go's on the record batch size).
const (
	maxKafkaClientID      = 256
	maxKafkaTopic         = 249
	minKafkaMessageBytes  = 512
	maxKafkaMessageBytes  = 1 << 30
	kafkaCompressionNames = "none, gzip, snappy, lz4, zstd"
)

func (k *Kafka) validate(p string) error {
	if len(k.Brokers) == 0 {
		return invalid(p+"brokers", "%s: at least one host:port", requiredFor(p, SinkKafka))
	}
	for i, b := range k.Brokers {
		if reason := hostport.Check(b, "a broker address", true); reason != "" {
			return invalid(p+"brokers", "broker %d: %s", i+1, reason)
		}
	}
	switch {
	case len(k.ClientID) > maxKafkaClientID:
		return invalid(p+"client_id", "longer than %d bytes", maxKafkaClientID)
	case hasControl(k.ClientID):
		return invalid(p+"client_id", "contains a control character")
	case hasControl(k.Source):
		return invalid(p+"source", "contains a control character")
	}
	if k.TopicPrefix != "" {
		// A prefix is valid when some topic can follow it.
		if reason := checkKafkaTopic(k.TopicPrefix + "x"); reason != "" {
			return invalid(p+"topic_prefix", "%q: %s", k.TopicPrefix, reason)
		}
	}
	for _, from := range sortedKeys(k.Topics) {
		if from == "" {
			return invalid(p+"topics", "an empty outbox topic is mapped")
		}
		if reason := checkKafkaTopic(k.Topics[from]); reason != "" {
			return invalid(p+"topics", "topic %q maps to %q: %s", from, k.Topics[from], reason)
		}
	}
	if (k.TLSCertFile == "") != (k.TLSKeyFile == "") {
		field := "tls_key_file"
		if k.TLSCertFile == "" {
			field = "tls_cert_file"
		}
		return invalid(p+field, "%stls_cert_file and %stls_key_file go together", p, p)
	}
	switch strings.ToUpper(k.SASLMechanism) {
	case "":
		if k.SASLUser != "" || k.SASLPassword != "" {
			return invalid(p+"sasl_mechanism", "required when %ssasl_user or %ssasl_password is set (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", p, p)
		}
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if k.SASLUser == "" {
			return invalid(p+"sasl_user", "required with %ssasl_mechanism", p)
		}
		if k.SASLPassword == "" {
			return invalid(p+"sasl_password", "required with %ssasl_mechanism", p)
		}
	default:
		return invalid(p+"sasl_mechanism", "%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", k.SASLMechanism)
	}
	switch {
	case k.ProduceTimeout <= 0:
		return invalid(p+"produce_timeout", "must be positive")
	case k.MaxBufferedRecords < 1:
		return invalid(p+"max_buffered_records", "must be positive")
	case k.MaxMessageBytes < minKafkaMessageBytes || k.MaxMessageBytes > maxKafkaMessageBytes:
		return invalid(p+"max_message_bytes", "must be between %d and %d", minKafkaMessageBytes, maxKafkaMessageBytes)
	case k.Linger < 0:
		return invalid(p+"linger", "must not be negative")
	}
	switch strings.ToLower(k.Compression) {
	case "none", "gzip", "snappy", "lz4", "zstd":
	default:
		return invalid(p+"compression", "%q is not one of %s", k.Compression, kafkaCompressionNames)
	}
	return nil
}

// checkKafkaTopic follows Kafka's rules for topic names.
func checkKafkaTopic(name string) string {
	switch name {
	case "":
		return "empty topic name"
	case ".", "..":
		return fmt.Sprintf("%q is not allowed as a topic name", name)
	}
	if len(name) > maxKafkaTopic {
		return fmt.Sprintf("longer than %d characters", maxKafkaTopic)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Sprintf("character %q not allowed (only a-z, A-Z, 0-9, '.', '_' and '-')", c)
		}
	}
	return ""
}

// maxShortstr is the longest AMQP 0-9-1 short string: exchange names, routing keys,
// property values.
const maxShortstr = 255

func (a *AMQP) validate(p string) error {
	if a.URL == "" {
		return invalid(p+"url", "%s", requiredFor(p, SinkAMQP))
	}
	// The URL may hold a password: it is never quoted.
	switch u, err := url.Parse(string(a.URL)); {
	case err != nil:
		return invalid(p+"url", "not a valid URL: %s", urlErr(err))
	case u.Scheme != "amqp" && u.Scheme != "amqps":
		return invalid(p+"url", "scheme %q is not amqp or amqps", u.Scheme)
	case u.Hostname() == "":
		return invalid(p+"url", "no host (amqp://host:port/vhost, any credentials before the host)")
	}
	if reason := checkShortstr(a.Exchange); reason != "" {
		return invalid(p+"exchange", "%s", reason)
	}
	if reason := checkShortstr(a.RoutingKeyPrefix); reason != "" {
		return invalid(p+"routing_key_prefix", "%s", reason)
	}
	for _, topic := range sortedKeys(a.RoutingKeys) {
		if topic == "" {
			return invalid(p+"routing_keys", "an empty topic is mapped")
		}
		if reason := checkShortstr(a.RoutingKeys[topic]); reason != "" {
			return invalid(p+"routing_keys", "topic %q: %s", topic, reason)
		}
	}
	d := &a.DeclareExchange
	dp := p + "declare_exchange."
	if d.Kind == "" {
		if d.Name != "" || d.Transient {
			return invalid(dp+"kind", "required to declare the exchange (%sname or %stransient is set)", dp, dp)
		}
	} else {
		switch kind := d.Kind; {
		case kind == "direct", kind == "fanout", kind == "topic", kind == "headers":
		case strings.HasPrefix(kind, "x-") && checkShortstr(kind) == "":
		default:
			return invalid(dp+"kind", "%q is not one of direct, fanout, topic, headers or an x- plugin type", kind)
		}
		name := cmp.Or(d.Name, a.Exchange)
		switch {
		case d.Name != "" && a.Exchange != "" && d.Name != a.Exchange:
			return invalid(dp+"name", "%q differs from %sexchange %q; leave it empty to declare the exchange published to", d.Name, p, a.Exchange)
		case name == "":
			return invalid(dp+"name", "the default exchange cannot be declared; set %sexchange", p)
		case strings.HasPrefix(name, "amq."):
			return invalid(dp+"name", "names starting with amq. are reserved for the broker's own exchanges")
		}
		if reason := checkShortstr(name); reason != "" {
			return invalid(dp+"name", "%s", reason)
		}
	}
	if reason := checkShortstr(a.Source); reason != "" {
		return invalid(p+"source", "%s", reason)
	}
	if reason := checkShortstr(a.ConnectionName); reason != "" {
		return invalid(p+"connection_name", "%s", reason)
	}
	switch {
	case a.PublishTimeout <= 0:
		return invalid(p+"publish_timeout", "must be positive")
	case a.ConnectTimeout <= 0:
		return invalid(p+"connect_timeout", "must be positive")
	case a.Heartbeat < time.Second:
		return invalid(p+"heartbeat", "AMQP counts heartbeats in whole seconds: use at least 1s")
	case a.ReconnectWait <= 0:
		return invalid(p+"reconnect_wait", "must be positive")
	case a.MaxMessageBytes < 1:
		return invalid(p+"max_message_bytes", "must be positive")
	}
	return nil
}

// checkShortstr returns why s cannot be an AMQP short string, or "".
func checkShortstr(s string) string {
	switch {
	case len(s) > maxShortstr:
		return fmt.Sprintf("%d bytes, longer than the AMQP limit of %d", len(s), maxShortstr)
	case !utf8.ValidString(s):
		return "not valid UTF-8"
	case hasControl(s):
		return "contains a control character"
	}
	return ""
}

// maxMQTTString is the most bytes in an MQTT UTF-8 string.
const maxMQTTString = 65535

func (m *MQTT) validate(p string) error {
	if m.Broker == "" {
		return invalid(p+"broker", "%s", requiredFor(p, SinkMQTT))
	}
	if reason := checkMQTTBroker(m.Broker); reason != "" {
		return invalid(p+"broker", "%s", reason)
	}
	for _, f := range []struct{ field, value string }{
		{"client_id", m.ClientID}, {"username", m.Username}, {"password", string(m.Password)},
		{"topic_prefix", m.TopicPrefix}, {"topic_separator", m.TopicSeparator}, {"source", m.Source},
	} {
		if len(f.value) > maxMQTTString {
			return invalid(p+f.field, "longer than %d bytes", maxMQTTString)
		}
		if f.field == "password" {
			continue // binary data in MQTT; and never described
		}
		if reason := checkMQTTString(f.value); reason != "" {
			return invalid(p+f.field, "%s", reason)
		}
	}
	if m.Password != "" && m.Username == "" {
		// MQTT 5 allows it, but brokers that authenticate by user name then see none.
		return invalid(p+"username", "required when %spassword is set", p)
	}
	for _, f := range []struct{ field, value string }{{"topic_prefix", m.TopicPrefix}, {"topic_separator", m.TopicSeparator}} {
		if strings.ContainsAny(f.value, "+#") {
			return invalid(p+f.field, "contains a wildcard (+ or #), which cannot be published to")
		}
	}
	if strings.HasPrefix(m.TopicPrefix, "$") {
		return invalid(p+"topic_prefix", "topics starting with $ are reserved for the broker")
	}
	switch {
	case m.KeepAlive < time.Second:
		return invalid(p+"keep_alive", "MQTT counts keep-alive in whole seconds: use at least 1s")
	case m.KeepAlive > 65535*time.Second:
		return invalid(p+"keep_alive", "at most 65535s")
	case m.ConnectTimeout <= 0:
		return invalid(p+"connect_timeout", "must be positive")
	case m.PublishTimeout <= 0:
		return invalid(p+"publish_timeout", "must be positive")
	case m.ReconnectWait <= 0:
		return invalid(p+"reconnect_wait", "must be positive")
	}
	return nil
}

// checkMQTTBroker follows the MQTT sink's rules for the broker address, without quoting it.
func checkMQTTBroker(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "not a valid URL: " + urlErr(err)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts":
	default:
		return fmt.Sprintf("scheme %q is not tcp, mqtt, ssl, tls or mqtts (websockets are not supported)", u.Scheme)
	}
	switch {
	case u.User != nil:
		return "put credentials in username and password, not in the URL"
	case u.Hostname() == "":
		return "no host"
	case u.Path != "" && u.Path != "/" || u.RawQuery != "":
		return "a broker URL has no path or query"
	}
	return ""
}

// checkMQTTString follows the MQTT sink's rules for strings: UTF-8 without control
// characters or noncharacters.
func checkMQTTString(s string) string {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			return "not valid UTF-8"
		case r < 0x20, r >= 0x7f && r <= 0x9f:
			return fmt.Sprintf("contains the control character %U", r)
		case r >= 0xfdd0 && r <= 0xfdef, r&0xfffe == 0xfffe:
			return fmt.Sprintf("contains the noncharacter %U", r)
		}
	}
	return ""
}

func (r *Redis) validate(p string) error {
	if r.Addr == "" {
		return invalid(p+"addr", "%s", requiredFor(p, SinkRedis))
	}
	if reason := hostport.Check(r.Addr, "the address", false); reason != "" {
		return invalid(p+"addr", "%s", reason)
	}
	switch {
	case r.DB < 0:
		return invalid(p+"db", "must not be negative")
	case r.MaxLen < 0:
		return invalid(p+"max_len", "must not be negative")
	case r.Approximate && r.MaxLen == 0:
		return invalid(p+"approximate", "requires %smax_len", p)
	case r.PublishTimeout <= 0:
		return invalid(p+"publish_timeout", "must be positive")
	case hasControl(r.Source):
		return invalid(p+"source", "contains a control character")
	case hasControl(r.StreamPrefix):
		return invalid(p+"stream_prefix", "contains a control character")
	}
	for _, topic := range sortedKeys(r.Streams) {
		if topic == "" {
			return invalid(p+"streams", "an empty topic is mapped")
		}
		if r.Streams[topic] == "" {
			return invalid(p+"streams", "topic %q: empty stream key", topic)
		}
	}
	return nil
}

// webhookReserved are headers the webhook sink or net/http sets; ce-* are reserved too.
var webhookReserved = []string{
	"content-type", "content-length", "host", "transfer-encoding", "connection", "te", "trailer",
	"upgrade", "keep-alive", "proxy-connection", "webhook-id", "webhook-timestamp", "webhook-signature",
}

// webhookSecretPrefix marks a Standard Webhooks secret: base64 of the key follows.
const webhookSecretPrefix = "whsec_"

func (w *Webhook) validate(p string) error {
	if w.URL == "" && len(w.URLs) == 0 {
		return invalid(p+"url", "%s (or set %surls)", requiredFor(p, SinkWebhook), p)
	}
	if w.URL != "" {
		if reason := checkHTTPURL(string(w.URL)); reason != "" {
			return invalid(p+"url", "%s", reason)
		}
	}
	for _, topic := range sortedKeys(w.URLs) {
		if topic == "" {
			return invalid(p+"urls", "an empty topic is mapped")
		}
		if reason := checkHTTPURL(string(w.URLs[topic])); reason != "" {
			return invalid(p+"urls", "topic %q: %s", topic, reason)
		}
	}
	for i, secret := range w.Secrets {
		if secret == "" {
			return invalid(p+"secrets", "secret %d is empty", i+1)
		}
		if b64, ok := strings.CutPrefix(string(secret), webhookSecretPrefix); ok {
			key, err := base64.StdEncoding.DecodeString(b64)
			if err != nil {
				return invalid(p+"secrets", "secret %d: after %s, not valid base64", i+1, webhookSecretPrefix)
			}
			if len(key) == 0 {
				return invalid(p+"secrets", "secret %d: empty key after %s", i+1, webhookSecretPrefix)
			}
		}
	}
	for _, name := range sortedKeys(w.Headers) {
		if reason := checkHeaderName(name); reason != "" {
			return invalid(p+"headers", "header %q: %s", name, reason)
		}
		lower := strings.ToLower(name)
		if slices.Contains(webhookReserved, lower) || strings.HasPrefix(lower, "ce-") {
			return invalid(p+"headers", "header %q is set by the sink", name)
		}
		if strings.ContainsFunc(string(w.Headers[name]), func(r rune) bool { return (r < 0x20 && r != '\t') || r == 0x7f }) {
			return invalid(p+"headers", "header %q: value contains a control character", name)
		}
	}
	switch {
	case w.Timeout <= 0:
		return invalid(p+"timeout", "must be positive")
	case w.MaxConcurrency < 1:
		return invalid(p+"max_concurrency", "must be positive")
	case hasControl(w.Source):
		return invalid(p+"source", "contains a control character")
	}
	return nil
}

// checkHTTPURL returns why raw is not a usable webhook endpoint, without quoting it (it may
// hold a token).
func checkHTTPURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "not a valid URL: " + urlErr(err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "scheme must be http or https"
	case u.Host == "":
		return "has no host"
	case u.Fragment != "":
		return "must not have a fragment"
	}
	return ""
}

// checkHeaderName accepts RFC 9110 token characters.
func checkHeaderName(name string) string {
	if name == "" {
		return "empty name"
	}
	if c, ok := envelope.NonToken(name); ok {
		return fmt.Sprintf("character %q not allowed in a header name", c)
	}
	return ""
}

// sortedKeys returns m's keys in order, so that errors do not depend on map order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
