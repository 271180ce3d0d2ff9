package config

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/route"
)

// Sink types accepted by sink.type.
const (
	SinkNATS    = "nats"
	SinkStdout  = "stdout"
	SinkKafka   = "kafka"
	SinkAMQP    = "amqp"
	SinkMQTT    = "mqtt"
	SinkRedis   = "redis"
	SinkWebhook = "webhook"
)

// SinkTypes lists the sink types in the order the documentation gives them.
var SinkTypes = []string{SinkNATS, SinkStdout, SinkKafka, SinkAMQP, SinkMQTT, SinkRedis, SinkWebhook}

// DefaultRouteSink is the sink name with which a route names the sink block (sink.*) rather
// than one of sinks.
const DefaultRouteSink = "default"

// Sink selects and configures one destination: the sink block, or one of the named sinks.
// Only the sub-block of Type is used (and checked); the others are ignored.
type Sink struct {
	Type    string  `yaml:"type" doc:"where messages go: nats, stdout, kafka, amqp, mqtt, redis or webhook"`
	NATS    NATS    `yaml:"nats"`
	Kafka   Kafka   `yaml:"kafka"`
	AMQP    AMQP    `yaml:"amqp"`
	MQTT    MQTT    `yaml:"mqtt"`
	Redis   Redis   `yaml:"redis"`
	Webhook Webhook `yaml:"webhook"`
}

// NATS configures the NATS JetStream sink (sink/nats).
type NATS struct {
	URL            URL           `yaml:"url" doc:"NATS server URL(s), comma-separated"`
	SubjectPrefix  string        `yaml:"subject_prefix" doc:"put before every topic: subject = prefix + topic"`
	Source         string        `yaml:"source" doc:"CloudEvents source attribute (the producing service)"`
	Stream         string        `yaml:"stream" doc:"when set, create or update this JetStream stream at start"`
	StreamSubjects []string      `yaml:"stream_subjects" doc:"subjects of that stream, comma-separated; default subject_prefix + \">\""`
	Name           string        `yaml:"name" doc:"connection name shown by the server" zero:"default"`
	MaxPending     int           `yaml:"max_pending" doc:"most messages sent and not yet acknowledged"`
	ReconnectWait  time.Duration `yaml:"reconnect_wait" doc:"pause between reconnect attempts"`
}

// Kafka configures the Kafka sink (sink/kafka).
type Kafka struct {
	Brokers               []string          `yaml:"brokers" doc:"seed brokers, host:port, comma-separated (required)"`
	ClientID              string            `yaml:"client_id" doc:"client id the brokers see" zero:"default"`
	Source                string            `yaml:"source" doc:"CloudEvents source attribute (the producing service)" zero:"default"`
	TopicPrefix           string            `yaml:"topic_prefix" doc:"put before every topic: Kafka topic = prefix + topic"`
	Topics                map[string]string `yaml:"topics" doc:"outbox topic → Kafka topic, exact, without prefix (YAML only)"`
	AutoCreateTopics      bool              `yaml:"auto_create_topics" doc:"let brokers with auto.create.topics.enable create missing topics"`
	TLSEnabled            bool              `yaml:"tls_enabled" doc:"dial the brokers with TLS (implied by the other tls_ settings)"`
	TLSCAFile             string            `yaml:"tls_ca_file" doc:"PEM file of CA certificates to verify the brokers with"`
	TLSCertFile           string            `yaml:"tls_cert_file" doc:"PEM client certificate, for mutual TLS (with tls_key_file)"`
	TLSKeyFile            string            `yaml:"tls_key_file" doc:"PEM client key, for mutual TLS (with tls_cert_file)"`
	TLSInsecureSkipVerify bool              `yaml:"tls_insecure_skip_verify" doc:"do not verify the brokers' certificates (tests only)"`
	SASLMechanism         string            `yaml:"sasl_mechanism" doc:"PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL"`
	SASLUser              string            `yaml:"sasl_user" doc:"SASL user name"`
	SASLPassword          Secret            `yaml:"sasl_password" doc:"SASL password (secret)"`
	ProduceTimeout        time.Duration     `yaml:"produce_timeout" doc:"bound on one publish: unacknowledged messages then fail and retry"`
	MaxBufferedRecords    int               `yaml:"max_buffered_records" doc:"most records the client holds before publishing waits"`
	MaxMessageBytes       int               `yaml:"max_message_bytes" doc:"largest record batch; at most the topics' max.message.bytes"`
	Linger                time.Duration     `yaml:"linger" doc:"how long a partition waits for more records before sending"`
	Compression           string            `yaml:"compression" doc:"none, gzip, snappy, lz4 or zstd"`
}

// AMQP configures the RabbitMQ sink (sink/amqp).
type AMQP struct {
	URL              URL               `yaml:"url" doc:"AMQP URI, amqp:// or amqps:// (user:password@ for credentials)"`
	Exchange         string            `yaml:"exchange" doc:"exchange receiving every message; empty: the default exchange"`
	RoutingKeyPrefix string            `yaml:"routing_key_prefix" doc:"put before every topic: routing key = prefix + topic"`
	RoutingKeys      map[string]string `yaml:"routing_keys" doc:"topic → routing key, exact, without prefix (YAML only)"`
	DeclareExchange  AMQPExchange      `yaml:"declare_exchange"`
	Source           string            `yaml:"source" doc:"CloudEvents source attribute and AMQP app-id" zero:"default"`
	ConnectionName   string            `yaml:"connection_name" doc:"connection name shown by the broker" zero:"default"`
	PublishTimeout   time.Duration     `yaml:"publish_timeout" doc:"bound on one publish: unconfirmed messages then fail and retry"`
	ConnectTimeout   time.Duration     `yaml:"connect_timeout" doc:"bound on dialing and the AMQP handshake"`
	Heartbeat        time.Duration     `yaml:"heartbeat" doc:"AMQP heartbeat interval (whole seconds)"`
	ReconnectWait    time.Duration     `yaml:"reconnect_wait" doc:"first pause between reconnect attempts (doubles up to 10s)"`
	MaxMessageBytes  int               `yaml:"max_message_bytes" doc:"larger payloads fail permanently; the broker's max_message_size"`
}

// AMQPExchange is the exchange the AMQP sink declares on every connection. It is declared
// when Kind is set.
type AMQPExchange struct {
	Kind      string `yaml:"kind" doc:"declare the exchange, of this type: direct, fanout, topic, headers or x-...; empty: do not declare"`
	Name      string `yaml:"name" doc:"exchange to declare; default sink.amqp.exchange"`
	Transient bool   `yaml:"transient" doc:"declare it non-durable (a broker restart deletes it)"`
}

// MQTT configures the MQTT 5 sink (sink/mqtt).
type MQTT struct {
	Broker         string        `yaml:"broker" doc:"broker address: tcp:// or mqtt://, ssl://, tls:// or mqtts:// for TLS"`
	ClientID       string        `yaml:"client_id" doc:"client identifier, unique per relay; empty: outbox-<random>"`
	Username       string        `yaml:"username" doc:"user name"`
	Password       Secret        `yaml:"password" doc:"password (secret)"`
	TopicPrefix    string        `yaml:"topic_prefix" doc:"put before every topic: MQTT topic = prefix + topic"`
	TopicSeparator string        `yaml:"topic_separator" doc:"replaces every . of a topic; . keeps topics as they are" zero:"default"`
	Source         string        `yaml:"source" doc:"CloudEvents source attribute (the producing service)" zero:"default"`
	KeepAlive      time.Duration `yaml:"keep_alive" doc:"MQTT keep-alive interval (whole seconds)"`
	ConnectTimeout time.Duration `yaml:"connect_timeout" doc:"bound on dialing, TLS and CONNECT/CONNACK"`
	PublishTimeout time.Duration `yaml:"publish_timeout" doc:"bound on one publish: messages without PUBACK then fail and retry"`
	ReconnectWait  time.Duration `yaml:"reconnect_wait" doc:"first pause between reconnect attempts (doubles up to 10s)"`
}

// Redis configures the Redis Streams sink (sink/redis).
type Redis struct {
	Addr           string            `yaml:"addr" doc:"server host:port"`
	Username       string            `yaml:"username" doc:"ACL user name (Redis 6+)"`
	Password       Secret            `yaml:"password" doc:"password (secret)"`
	DB             int               `yaml:"db" doc:"database number"`
	TLS            bool              `yaml:"tls" doc:"connect with TLS, verifying the server against the system roots"`
	Source         string            `yaml:"source" doc:"CloudEvents source attribute (the producing service)" zero:"default"`
	StreamPrefix   string            `yaml:"stream_prefix" doc:"put before every topic: stream key = prefix + topic"`
	Streams        map[string]string `yaml:"streams" doc:"topic → stream key, exact, without prefix (YAML only)"`
	MaxLen         int               `yaml:"max_len" doc:"cap every stream at about this many entries (XADD MAXLEN); 0: no cap"`
	Approximate    bool              `yaml:"approximate" doc:"trim with MAXLEN ~ (cheaper, may keep a few more); needs max_len"`
	PublishTimeout time.Duration     `yaml:"publish_timeout" doc:"bound on one publish: unanswered messages then fail and retry"`
}

// Webhook configures the HTTP webhook sink (sink/webhook).
type Webhook struct {
	URL            URL               `yaml:"url" doc:"endpoint receiving every topic not in urls (http or https)"`
	URLs           map[string]URL    `yaml:"urls" doc:"topic → its own endpoint (YAML only)"`
	Secrets        []Secret          `yaml:"secrets" doc:"Standard Webhooks signing secrets, comma-separated (secret)"`
	Headers        map[string]Secret `yaml:"headers" doc:"headers sent with every request, e.g. Authorization (YAML only, secret)"`
	Timeout        time.Duration     `yaml:"timeout" doc:"bound on one request, from connecting to reading the response"`
	MaxConcurrency int               `yaml:"max_concurrency" doc:"most requests in flight (one key's messages go one by one)"`
	Source         string            `yaml:"source" doc:"CloudEvents source attribute (the producing service)" zero:"default"`
}

// Route sends the topics matching Topic to the sink named Sink.
type Route struct {
	// Topic is a dot-separated pattern: * matches one token, a final > one or more.
	Topic string `yaml:"topic"`
	// Sink names one of Config.Sinks, or DefaultRouteSink for the sink block.
	Sink string `yaml:"sink"`
}

// Sink defaults, the same as the sink packages'.
const (
	DefaultSinkType                = SinkNATS
	DefaultSource                  = "outbox"
	DefaultNATSURL                 = "nats://127.0.0.1:4222"
	DefaultNATSName                = "outbox-relay"
	DefaultNATSMaxPending          = 4096
	DefaultNATSReconnectWait       = 500 * time.Millisecond
	DefaultKafkaClientID           = "outbox-relay"
	DefaultKafkaProduceTimeout     = 10 * time.Second
	DefaultKafkaMaxBufferedRecords = 50_000
	DefaultKafkaMaxMessageBytes    = 1_000_012
	DefaultKafkaCompression        = "snappy"
	// DefaultAMQPURL is a local RabbitMQ; without user info the client logs in as guest.
	DefaultAMQPURL             = "amqp://127.0.0.1:5672/"
	DefaultAMQPConnectionName  = "outbox-relay"
	DefaultAMQPPublishTimeout  = 10 * time.Second
	DefaultAMQPConnectTimeout  = 10 * time.Second
	DefaultAMQPHeartbeat       = 10 * time.Second
	DefaultAMQPReconnectWait   = 100 * time.Millisecond
	DefaultAMQPMaxMessageBytes = 128 << 20
	DefaultMQTTBroker          = "tcp://127.0.0.1:1883"
	DefaultMQTTTopicSeparator  = "/"
	DefaultMQTTKeepAlive       = 30 * time.Second
	DefaultMQTTConnectTimeout  = 10 * time.Second
	DefaultMQTTPublishTimeout  = 10 * time.Second
	DefaultMQTTReconnectWait   = 100 * time.Millisecond
	DefaultRedisAddr           = "127.0.0.1:6379"
	DefaultRedisPublishTimeout = 5 * time.Second
	DefaultWebhookTimeout      = 10 * time.Second
	DefaultWebhookConcurrency  = 16
)

// DefaultSink returns the defaults of a sink block, type nats.
func DefaultSink() Sink {
	return Sink{
		Type: DefaultSinkType,
		NATS: NATS{
			URL:           DefaultNATSURL,
			Source:        DefaultSource,
			Name:          DefaultNATSName,
			MaxPending:    DefaultNATSMaxPending,
			ReconnectWait: DefaultNATSReconnectWait,
		},
		Kafka: Kafka{
			ClientID:           DefaultKafkaClientID,
			Source:             DefaultSource,
			ProduceTimeout:     DefaultKafkaProduceTimeout,
			MaxBufferedRecords: DefaultKafkaMaxBufferedRecords,
			MaxMessageBytes:    DefaultKafkaMaxMessageBytes,
			Compression:        DefaultKafkaCompression,
		},
		AMQP: AMQP{
			URL:             DefaultAMQPURL,
			Source:          DefaultSource,
			ConnectionName:  DefaultAMQPConnectionName,
			PublishTimeout:  DefaultAMQPPublishTimeout,
			ConnectTimeout:  DefaultAMQPConnectTimeout,
			Heartbeat:       DefaultAMQPHeartbeat,
			ReconnectWait:   DefaultAMQPReconnectWait,
			MaxMessageBytes: DefaultAMQPMaxMessageBytes,
		},
		MQTT: MQTT{
			Broker:         DefaultMQTTBroker,
			TopicSeparator: DefaultMQTTTopicSeparator,
			Source:         DefaultSource,
			KeepAlive:      DefaultMQTTKeepAlive,
			ConnectTimeout: DefaultMQTTConnectTimeout,
			PublishTimeout: DefaultMQTTPublishTimeout,
			ReconnectWait:  DefaultMQTTReconnectWait,
		},
		Redis: Redis{
			Addr:           DefaultRedisAddr,
			Source:         DefaultSource,
			PublishTimeout: DefaultRedisPublishTimeout,
		},
		Webhook: Webhook{
			Timeout:        DefaultWebhookTimeout,
			MaxConcurrency: DefaultWebhookConcurrency,
			Source:         DefaultSource,
		},
	}
}

// DefaultUsed reports whether the relay publishes through the sink block: when no routes are
// set, or when a route names DefaultRouteSink.
func (c *Config) DefaultUsed() bool {
	if len(c.Routes) == 0 {
		return true
	}
	for _, r := range c.Routes {
		if r.Sink == DefaultRouteSink {
			return true
		}
	}
	return false
}

// sinkName is what a named sink may be called: it becomes part of YAML paths in errors
// (sinks.NAME.kafka.brokers) and of error messages.
var sinkName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

func (c *Config) validateSinks() error {
	if err := c.Sink.validate("sink.", c.DefaultUsed(), false, c.Relay.PublishTimeout); err != nil {
		return err
	}
	names := sortedKeys(c.Sinks)
	for _, name := range names {
		switch {
		case name == DefaultRouteSink:
			return invalid("sinks."+name, "the name %q is reserved for the sink block (sink.*)", DefaultRouteSink)
		case !sinkName.MatchString(name):
			return invalid("sinks", "%q: a sink name is 1 to 64 letters, digits, '-' or '_', starting with a letter or digit", name)
		}
		s := c.Sinks[name]
		if err := s.validate("sinks."+name+".", true, true, c.Relay.PublishTimeout); err != nil {
			return err
		}
	}
	if len(c.Sinks) > 0 && len(c.Routes) == 0 {
		return invalid("routes", "required when sinks is set: named sinks receive messages only through routes")
	}
	return c.validateRoutes(names)
}

func (c *Config) validateRoutes(names []string) error {
	if len(c.Routes) == 0 {
		return nil
	}
	routes := make([]route.Route, len(c.Routes))
	for i, r := range c.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		if r.Topic == "" {
			return invalid(field+".topic", "required: a topic pattern such as orders.* or notify.>")
		}
		switch {
		case r.Sink == "":
			return invalid(field+".sink", "required: the name of one of sinks, or %q for the sink block", DefaultRouteSink)
		case r.Sink != DefaultRouteSink && !slices.Contains(names, r.Sink):
			known := append(slices.Clone(names), DefaultRouteSink)
			return invalid(field+".sink", "unknown sink %q; known: %s", r.Sink, strings.Join(known, ", "))
		}
		routes[i] = route.Route{Pattern: r.Topic, Name: r.Sink, Sink: nopSink{}}
	}
	// route.New checks the patterns, naming routes[i].topic, as the relay will build them.
	if _, err := route.New(routes, nil); err != nil {
		return err
	}
	for _, topic := range c.Topics {
		matched := false
		for _, r := range c.Routes {
			matched = matched || route.Match(r.Topic, topic)
		}
		if !matched {
			return invalid("topics", "%q matches no route: its messages would all go to the dead letters", topic)
		}
	}
	return nil
}

// nopSink stands in for the real sinks when route.New checks the patterns.
type nopSink struct{}

func (nopSink) Publish(_ context.Context, msgs []*outbox.Record) []error {
	return make([]error, len(msgs))
}
func (nopSink) Close() error { return nil }

var _ sink.Sink = nopSink{}

// validate checks a sink block whose settings start with prefix ("sink." or "sinks.NAME.").
// When used, the sub-block of its type is checked too, by its sink package's Validate; the
// other sub-blocks are ignored, so that settings meant for another relay
// (OUTBOX_SINK_KAFKA_* in a shared environment) do not stop this one. A named sink must say
// its type. publishTimeout is relay.publish_timeout, also the NATS sink's.
func (s *Sink) validate(prefix string, used, named bool, publishTimeout time.Duration) error {
	switch {
	case s.Type == "" && named:
		return invalid(prefix+"type", "required: one of %s", strings.Join(SinkTypes, ", "))
	case !slices.Contains(SinkTypes, s.Type):
		return invalid(prefix+"type", "%q is not one of %s", s.Type, strings.Join(SinkTypes, ", "))
	case !used || s.Type == SinkStdout: // stdout has no settings
		return nil
	}
	return requiredWhen(s.checkType(prefix+s.Type+".", publishTimeout), prefix, s.Type)
}

// checkType checks the sub-block of the sink's type, whose settings start with p.
func (s *Sink) checkType(p string, publishTimeout time.Duration) error {
	d := DefaultSink()
	switch s.Type {
	case SinkNATS:
		if err := s.NATS.checkStream(p); err != nil {
			return err
		}
		return checkBlock(s.Type, p, s.NATS, d.NATS, s.NATS.SinkConfig(publishTimeout).Validate)
	case SinkKafka:
		return checkBlock(s.Type, p, s.Kafka, d.Kafka, s.Kafka.SinkConfig().Validate)
	case SinkAMQP:
		if dx, dp := &s.AMQP.DeclareExchange, p+"declare_exchange."; dx.Kind == "" && (dx.Name != "" || dx.Transient) {
			// Without a kind the exchange is not declared (see SinkConfig).
			return invalid(dp+"kind", "required to declare the exchange (%sname or %stransient is set)", dp, dp)
		}
		return checkBlock(s.Type, p, s.AMQP, d.AMQP, s.AMQP.SinkConfig().Validate)
	case SinkMQTT:
		return checkBlock(s.Type, p, s.MQTT, d.MQTT, s.MQTT.SinkConfig().Validate)
	case SinkRedis:
		return checkBlock(s.Type, p, s.Redis, d.Redis, s.Redis.SinkConfig().Validate)
	case SinkWebhook:
		return checkBlock(s.Type, p, s.Webhook, d.Webhook, s.Webhook.SinkConfig().Validate)
	}
	return nil
}

// requiredWhen says, of a setting of the sub-block of a sink type that is required, which
// choice requires it: "required when sink.type is kafka".
func requiredWhen(err error, prefix, typ string) error {
	var ce *outbox.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	rest, ok := strings.CutPrefix(ce.Reason, "required")
	if !ok || rest != "" && !strings.HasPrefix(rest, ":") && !strings.HasPrefix(rest, " (") {
		return err // "required with ...", "required when ...": already says when
	}
	return invalid(ce.Field, "required when %stype is %s%s", prefix, typ, rest)
}

// checkStream checks the stream settings that have no NATS sink Config field of their own:
// stream_subjects belongs to stream, and defaults to subject_prefix + ">" (see
// EffectiveStreamSubjects).
func (n *NATS) checkStream(p string) error {
	switch {
	case n.Stream == "" && len(n.StreamSubjects) > 0:
		return invalid(p+"stream_subjects", "set without %sstream", p)
	case n.Stream != "" && len(n.EffectiveStreamSubjects()) == 0:
		return invalid(p+"stream_subjects", "required when %sstream is set and %ssubject_prefix does not end with \".\"", p, p)
	}
	return nil
}

// EffectiveStreamSubjects returns the subjects of the configured stream:
// sink.nats.stream_subjects, or subject_prefix + ">" when that is empty and the prefix ends
// with a dot.
func (n *NATS) EffectiveStreamSubjects() []string {
	if len(n.StreamSubjects) > 0 {
		return n.StreamSubjects
	}
	if strings.HasSuffix(n.SubjectPrefix, ".") {
		return []string{n.SubjectPrefix + ">"}
	}
	return nil
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
