package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// routedYAML is the routing example of docs/configuration.md.
const routedYAML = `
database_url: postgres://relay:dbpass-1@db:5432/app
sinks:
  events: {type: kafka, kafka: {brokers: [127.0.0.1:9092], sasl_mechanism: SCRAM-SHA-512, sasl_user: relay, sasl_password: kafkapass-1}}
  sms-provider:
    type: webhook
    webhook:
      url: https://sms.example/hook?token=urltoken-1
      secrets: [whsec_c2VjcmV0LXNpZ25pbmcta2V5LTAxMjM0NTY3]
      headers: {Authorization: Bearer headertoken-1}
routes:
  - topic: "orders.*"      # dot-separated; * = one token, > = the rest
    sink: events
  - topic: notify.sms
    sink: sms-provider
`

// secretsOf are the credentials in routedYAML, which nothing may print.
var secretsOf = []string{"dbpass-1", "kafkapass-1", "urltoken-1", "c2VjcmV0LXNpZ25pbmcta2V5LTAxMjM0NTY3", "headertoken-1"}

func TestRoutedConfig(t *testing.T) {
	t.Parallel()
	cfg, err := Load(LoadOptions{File: writeFile(t, routedYAML), Getenv: env()})
	if err != nil {
		t.Fatal(err)
	}
	if got := sortedKeys(cfg.Sinks); !slices.Equal(got, []string{"events", "sms-provider"}) {
		t.Fatalf("sinks %v", got)
	}
	ev, sms := cfg.Sinks["events"], cfg.Sinks["sms-provider"]
	if ev.Type != SinkKafka || !slices.Equal(ev.Kafka.Brokers, []string{"127.0.0.1:9092"}) ||
		ev.Kafka.SASLPassword != "kafkapass-1" || ev.Kafka.Compression != DefaultKafkaCompression {
		t.Fatalf("events: %+v", ev.Kafka)
	}
	if sms.Type != SinkWebhook || sms.Webhook.URL != "https://sms.example/hook?token=urltoken-1" ||
		len(sms.Webhook.Secrets) != 1 || sms.Webhook.Headers["Authorization"] != "Bearer headertoken-1" ||
		sms.Webhook.Timeout != DefaultWebhookTimeout {
		t.Fatalf("sms-provider: %+v", sms.Webhook)
	}
	want := []Route{{Topic: "orders.*", Sink: "events"}, {Topic: "notify.sms", Sink: "sms-provider"}}
	if !reflect.DeepEqual(cfg.Routes, want) {
		t.Fatalf("routes %+v", cfg.Routes)
	}
	if cfg.DefaultUsed() {
		t.Fatal("the sink block is used although no route names default")
	}

	// Nothing prints a credential: fmt in any form, slog, JSON, Get.
	var logged strings.Builder
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "cfg", cfg, "sms", sms.Webhook, "pw", ev.Kafka.SASLPassword)
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outputs := []string{fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), logged.String(), string(js)}
	for _, s := range Settings() {
		v, _ := cfg.Get(s.Path)
		outputs = append(outputs, v)
	}
	for _, out := range outputs {
		for _, secret := range secretsOf {
			if strings.Contains(out, secret) {
				t.Fatalf("printed %q:\n%s", secret, out)
			}
		}
	}
	if !strings.Contains(fmt.Sprintf("%+v", cfg), "postgres://relay:xxxxx@db:5432/…") {
		t.Errorf("database_url not shown redacted: %+v", cfg)
	}
	if !strings.Contains(logged.String(), redacted) {
		t.Errorf("log lacks %s: %s", redacted, logged.String())
	}
}

// TestRoutingErrors checks that mistakes in sinks and routes name their YAML path.
func TestRoutingErrors(t *testing.T) {
	t.Parallel()
	const sinks = "sinks:\n  events: {type: kafka, kafka: {brokers: [k:9092]}}\n  out: {type: stdout}\n"
	tests := []struct {
		name   string
		yaml   string
		field  string
		reason string
	}{
		{name: "unknown sink", yaml: sinks + "routes:\n  - {topic: a.b, sink: out}\n  - {topic: orders.*, sink: evnts}\n",
			field: "routes[1].sink", reason: `unknown sink "evnts"; known: events, out, default`},
		{name: "bad pattern", yaml: sinks + "routes:\n  - {topic: 'orders.>.x', sink: events}\n",
			field: "routes[0].topic", reason: `">" must be the last token`},
		{name: "partial wildcard", yaml: sinks + "routes:\n  - {topic: 'orders.cr*', sink: events}\n",
			field: "routes[0].topic", reason: "whole tokens"},
		{name: "empty token", yaml: sinks + "routes:\n  - {topic: 'orders..x', sink: events}\n",
			field: "routes[0].topic", reason: "empty token"},
		{name: "route without topic", yaml: sinks + "routes:\n  - {sink: events}\n", field: "routes[0].topic", reason: "required"},
		{name: "route without sink", yaml: sinks + "routes:\n  - {topic: a}\n", field: "routes[0].sink", reason: "required"},
		{name: "route unknown key", yaml: sinks + "routes:\n  - {topic: a, sink: events, sinks: x}\n",
			field: "routes[0].sinks", reason: "did you mean routes[0].sink?"},
		{name: "route not a mapping", yaml: sinks + "routes:\n  - events\n", field: "routes[0]", reason: "mapping"},
		{name: "routes not a list", yaml: sinks + "routes: {a: b}\n", field: "routes", reason: "list"},
		{name: "sinks without routes", yaml: sinks, field: "routes", reason: "required when sinks is set"},
		{name: "named sink without type", yaml: "sinks:\n  x: {kafka: {brokers: [k:1]}}\nroutes:\n  - {topic: a, sink: x}\n",
			field: "sinks.x.type", reason: "required"},
		{name: "named sink per-type check", yaml: "sinks:\n  events: {type: kafka}\nroutes:\n  - {topic: a, sink: events}\n",
			field: "sinks.events.kafka.brokers", reason: "required when sinks.events.type is kafka"},
		{name: "named sink unknown key", yaml: "sinks:\n  events: {type: kafka, kafka: {broker: x}}\n",
			field: "sinks.events.kafka.broker", reason: "did you mean"},
		{name: "named sink reserved", yaml: "sinks:\n  default: {type: stdout}\nroutes:\n  - {topic: a, sink: default}\n",
			field: "sinks.default", reason: "reserved"},
		{name: "named sink bad name", yaml: "sinks:\n  'a.b': {type: stdout}\nroutes:\n  - {topic: a, sink: a.b}\n",
			field: "sinks", reason: "letters, digits"},
		{name: "named sink not a mapping", yaml: "sinks:\n  x: kafka\n", field: "sinks.x", reason: "mapping"},
		{name: "default block checked when routed", yaml: sinks + "sink: {type: kafka}\nroutes:\n  - {topic: a, sink: default}\n",
			field: "sink.kafka.brokers", reason: "required when sink.type is kafka"},
		{name: "topic matches no route", yaml: sinks + "topics: [orders.created, notify.email]\nroutes:\n  - {topic: orders.*, sink: events}\n",
			field: "topics", reason: `"notify.email" matches no route`},
		{name: "map value not a string", yaml: "sink:\n  kafka:\n    topics: {a: [b]}\n", field: "sink.kafka.topics", reason: "must be a string"},
		{name: "map given list", yaml: "sink:\n  kafka:\n    topics: [a]\n", field: "sink.kafka.topics", reason: "mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(LoadOptions{File: writeFile(t, tt.yaml), Getenv: env("OUTBOX_DATABASE_URL", pgURL)})
			wantConfigError(t, err, tt.field, tt.field+": ", tt.reason)
		})
	}
}

func TestRoutesUnmatchedAllowedWithoutTopics(t *testing.T) {
	t.Parallel()
	// A route to default uses the sink block; sinks need not be set then.
	cfg, err := Load(LoadOptions{File: writeFile(t, "sink: {type: stdout}\nroutes:\n  - {topic: '>', sink: default}\n"),
		Getenv: env("OUTBOX_DATABASE_URL", pgURL, "OUTBOX_TOPICS", "a.b, c")})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.DefaultUsed() || !slices.Equal(cfg.Topics, []string{"a.b", "c"}) {
		t.Fatalf("%+v", cfg)
	}
	// Unused, the sink block is not required to be complete.
	_, err = Load(LoadOptions{File: writeFile(t, "sink: {type: kafka}\nsinks: {o: {type: stdout}}\nroutes:\n  - {topic: '>', sink: o}\n"),
		Getenv: env("OUTBOX_DATABASE_URL", pgURL)})
	if err != nil {
		t.Fatal(err)
	}
	// Neither are the blocks of other types: a shared environment may hold settings for
	// other relays.
	_, err = Load(LoadOptions{Getenv: env("OUTBOX_DATABASE_URL", pgURL, "OUTBOX_SINK_KAFKA_SASL_PASSWORD", "pw",
		"OUTBOX_SINK_WEBHOOK_SECRETS", "whsec_!")})
	if err != nil {
		t.Fatal(err)
	}
	// But its type is checked.
	_, err = Load(LoadOptions{File: writeFile(t, "sink: {type: kafak}\nsinks: {o: {type: stdout}}\nroutes:\n  - {topic: '>', sink: o}\n"),
		Getenv: env("OUTBOX_DATABASE_URL", pgURL)})
	wantConfigError(t, err, "sink.type", "kafak")
}

// TestSinkValidate checks each sink type's settings, named by YAML path. Each case starts
// from a complete sink of the type its field names.
func TestSinkValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		edit   func(s *Sink)
		field  string // "" means valid; relative to "sink."; its first part is the type
		reason string
	}{
		{name: "stdout", edit: func(s *Sink) { s.Type = SinkStdout }},
		{name: "kafka", edit: func(s *Sink) { s.Type = SinkKafka; s.Kafka.Brokers = []string{"a:9092", "b"} }},
		{name: "kafka full", edit: func(s *Sink) {
			s.Type = SinkKafka
			s.Kafka.Brokers = []string{"a:9092"}
			s.Kafka.TopicPrefix = "prod."
			s.Kafka.Topics = map[string]string{"audit": "audit-log"}
			s.Kafka.SASLMechanism, s.Kafka.SASLUser, s.Kafka.SASLPassword = "scram-sha-256", "u", "p"
			s.Kafka.TLSCertFile, s.Kafka.TLSKeyFile = "c.pem", "k.pem"
			s.Kafka.Compression = "ZSTD"
		}},
		{name: "kafka brokers", edit: func(s *Sink) { s.Kafka.Brokers = nil }, field: "kafka.brokers", reason: "required when sink.type is kafka"},
		{name: "kafka broker space", edit: func(s *Sink) { s.Kafka.Brokers = []string{"a b"} }, field: "kafka.brokers", reason: "host:port"},
		{name: "kafka prefix", edit: func(s *Sink) { s.Kafka.TopicPrefix = "a/" }, field: "kafka.topic_prefix", reason: "not allowed"},
		{name: "kafka topics", edit: func(s *Sink) { s.Kafka.Topics = map[string]string{"a": "b c"} }, field: "kafka.topics", reason: `topic "a"`},
		{name: "kafka sasl mechanism", edit: func(s *Sink) { s.Kafka.SASLMechanism = "GSSAPI" }, field: "kafka.sasl_mechanism"},
		{name: "kafka sasl without mechanism", edit: func(s *Sink) { s.Kafka.SASLPassword = "hunter2" }, field: "kafka.sasl_mechanism", reason: "required"},
		{name: "kafka sasl password", edit: func(s *Sink) { s.Kafka.SASLMechanism, s.Kafka.SASLUser = "PLAIN", "u" }, field: "kafka.sasl_password", reason: "required"},
		{name: "kafka sasl user", edit: func(s *Sink) { s.Kafka.SASLMechanism, s.Kafka.SASLPassword = "PLAIN", "p" }, field: "kafka.sasl_user"},
		{name: "kafka tls pair", edit: func(s *Sink) { s.Kafka.TLSCertFile = "c.pem" }, field: "kafka.tls_key_file", reason: "together"},
		{name: "kafka compression", edit: func(s *Sink) { s.Kafka.Compression = "brotli" }, field: "kafka.compression"},
		{name: "kafka message bytes", edit: func(s *Sink) { s.Kafka.MaxMessageBytes = 100 }, field: "kafka.max_message_bytes"},
		{name: "kafka timeout", edit: func(s *Sink) { s.Kafka.ProduceTimeout = 0 }, field: "kafka.produce_timeout"},
		{name: "kafka linger", edit: func(s *Sink) { s.Kafka.Linger = -time.Second }, field: "kafka.linger"},

		{name: "amqp", edit: func(s *Sink) {
			s.Type = SinkAMQP
			s.AMQP.URL = "amqps://u:p@rabbit:5671/prod"
			s.AMQP.Exchange = "events"
			s.AMQP.DeclareExchange.Kind = "topic"
			s.AMQP.RoutingKeys = map[string]string{"audit": "audit-log"}
		}},
		{name: "amqp url scheme", edit: func(s *Sink) { s.Type = SinkAMQP; s.AMQP.URL = "http://u:hunter2@h/" }, field: "amqp.url", reason: "scheme"},
		{name: "amqp url empty", edit: func(s *Sink) { s.Type = SinkAMQP; s.AMQP.URL = "" }, field: "amqp.url", reason: "required when sink.type is amqp"},
		{name: "amqp declare default exchange", edit: func(s *Sink) { s.AMQP.DeclareExchange.Kind = "topic" }, field: "amqp.declare_exchange.name", reason: "default exchange"},
		{name: "amqp declare name without kind", edit: func(s *Sink) { s.AMQP.DeclareExchange.Name = "x" }, field: "amqp.declare_exchange.kind", reason: "required"},
		{name: "amqp declare kind", edit: func(s *Sink) { s.AMQP.Exchange = "x"; s.AMQP.DeclareExchange.Kind = "fan" }, field: "amqp.declare_exchange.kind"},
		{name: "amqp declare differs", edit: func(s *Sink) {
			s.AMQP.Exchange = "x"
			s.AMQP.DeclareExchange = AMQPExchange{Kind: "topic", Name: "y"}
		}, field: "amqp.declare_exchange.name", reason: "differs"},
		{name: "amqp declare amq", edit: func(s *Sink) { s.AMQP.DeclareExchange = AMQPExchange{Kind: "topic", Name: "amq.topic"} }, field: "amqp.declare_exchange.name", reason: "reserved"},
		{name: "amqp heartbeat", edit: func(s *Sink) { s.AMQP.Heartbeat = 500 * time.Millisecond }, field: "amqp.heartbeat", reason: "1s"},
		{name: "amqp routing key", edit: func(s *Sink) { s.AMQP.RoutingKeyPrefix = strings.Repeat("k", 256) }, field: "amqp.routing_key_prefix", reason: "255"},

		{name: "mqtt", edit: func(s *Sink) {
			s.Type = SinkMQTT
			s.MQTT.Broker = "mqtts://broker"
			s.MQTT.Username, s.MQTT.Password = "u", "p"
		}},
		{name: "mqtt broker scheme", edit: func(s *Sink) { s.MQTT.Broker = "ws://b:80" }, field: "mqtt.broker", reason: "scheme"},
		{name: "mqtt broker credentials", edit: func(s *Sink) { s.MQTT.Broker = "tcp://u:hunter2@b:1883" }, field: "mqtt.broker", reason: "username and password"},
		{name: "mqtt password without user", edit: func(s *Sink) { s.MQTT.Password = "hunter2" }, field: "mqtt.username", reason: "required"},
		{name: "mqtt prefix wildcard", edit: func(s *Sink) { s.MQTT.TopicPrefix = "a/+/" }, field: "mqtt.topic_prefix", reason: "wildcard"},
		{name: "mqtt prefix dollar", edit: func(s *Sink) { s.MQTT.TopicPrefix = "$SYS/" }, field: "mqtt.topic_prefix", reason: "reserved"},
		{name: "mqtt keep alive", edit: func(s *Sink) { s.MQTT.KeepAlive = 70000 * time.Second }, field: "mqtt.keep_alive"},

		{name: "redis", edit: func(s *Sink) { s.Type = SinkRedis; s.Redis.MaxLen = 1000; s.Redis.Approximate = true }},
		{name: "redis addr", edit: func(s *Sink) { s.Redis.Addr = "redis" }, field: "redis.addr", reason: "host:port"},
		{name: "redis approximate", edit: func(s *Sink) { s.Redis.Approximate = true }, field: "redis.approximate", reason: "max_len"},
		{name: "redis max len", edit: func(s *Sink) { s.Redis.MaxLen = -1 }, field: "redis.max_len"},
		{name: "redis streams", edit: func(s *Sink) { s.Redis.Streams = map[string]string{"a": ""} }, field: "redis.streams"},

		{name: "webhook", edit: func(s *Sink) { s.Type = SinkWebhook; s.Webhook.URLs = map[string]URL{"a": "http://h/x"} }},
		{name: "webhook url required", edit: func(s *Sink) { s.Webhook.URL = "" }, field: "webhook.url", reason: "required when sink.type is webhook"},
		{name: "webhook url scheme", edit: func(s *Sink) { s.Webhook.URL = "ftp://h/hooktoken-9" }, field: "webhook.url", reason: "http or https"},
		{name: "webhook urls", edit: func(s *Sink) { s.Webhook.URLs = map[string]URL{"a.b": "https:///hooktoken-9"} }, field: "webhook.urls", reason: `topic "a.b": has no host`},
		{name: "webhook secret base64", edit: func(s *Sink) { s.Webhook.Secrets = []Secret{"raw-ok", "whsec_hooktoken-9!"} }, field: "webhook.secrets", reason: "secret 2"},
		{name: "webhook secret empty", edit: func(s *Sink) { s.Webhook.Secrets = []Secret{""} }, field: "webhook.secrets", reason: "empty"},
		{name: "webhook header reserved", edit: func(s *Sink) { s.Webhook.Headers = map[string]Secret{"Ce-Id": "x"} }, field: "webhook.headers", reason: "set by the sink"},
		{name: "webhook header value", edit: func(s *Sink) { s.Webhook.Headers = map[string]Secret{"X-Token": "hooktoken-9\n"} }, field: "webhook.headers", reason: "control"},
		{name: "webhook concurrency", edit: func(s *Sink) { s.Webhook.MaxConcurrency = 0 }, field: "webhook.max_concurrency"},

		{name: "nats max pending", edit: func(s *Sink) { s.NATS.MaxPending = 0 }, field: "nats.max_pending"},
		{name: "redis addr required", edit: func(s *Sink) { s.Redis.Addr = "" }, field: "redis.addr", reason: "required when sink.type is redis"},
		{name: "mqtt broker required", edit: func(s *Sink) { s.MQTT.Broker = "" }, field: "mqtt.broker", reason: "required when sink.type is mqtt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, named := range []bool{false, true} {
				c := Default()
				c.DatabaseURL = pgURL
				s := DefaultSink()
				if typ, _, ok := strings.Cut(tt.field, "."); ok {
					s.Type = typ
				}
				s.Kafka.Brokers = []string{"k:9092"}
				s.Webhook.URL = "https://h/hook"
				tt.edit(&s)
				prefix := "sink."
				if named {
					c.Sinks = map[string]Sink{"x": s}
					c.Routes = []Route{{Topic: ">", Sink: "x"}}
					prefix = "sinks.x."
				} else {
					c.Sink = s
				}
				err := c.Validate()
				if tt.field == "" {
					if err != nil {
						t.Fatalf("valid config refused: %v", err)
					}
					continue
				}
				reason := strings.ReplaceAll(tt.reason, "sink.type", prefix+"type")
				wantConfigError(t, err, prefix+tt.field, prefix+tt.field+": ", reason)
				for _, secret := range []string{"hunter2", "hooktoken-9"} {
					if strings.Contains(err.Error(), secret) {
						t.Fatalf("error %q shows a secret", err)
					}
				}
			}
		})
	}
}

func TestNewSettings(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]Setting{
		"topics":                          {Env: "OUTBOX_TOPICS", Flag: "topics", Kind: KindList},
		"poll.max_batch_bytes":            {Env: "OUTBOX_POLL_MAX_BATCH_BYTES", Flag: "poll-max-batch-bytes", Kind: KindInt, Default: "16777216"},
		"poll.notify":                     {Env: "OUTBOX_POLL_NOTIFY", Flag: "poll-notify", Kind: KindBool, Default: "true"},
		"relay.batch_timeout":             {Env: "OUTBOX_RELAY_BATCH_TIMEOUT", Flag: "relay-batch-timeout", Kind: KindDuration, Default: "1m"},
		"sink.kafka.sasl_password":        {Env: "OUTBOX_SINK_KAFKA_SASL_PASSWORD", Flag: "sink-kafka-sasl-password", Kind: KindString, Secret: true},
		"sink.webhook.secrets":            {Env: "OUTBOX_SINK_WEBHOOK_SECRETS", Flag: "sink-webhook-secrets", Kind: KindList, Secret: true},
		"sink.webhook.headers":            {Kind: KindMap, Secret: true},
		"sink.amqp.declare_exchange.kind": {Env: "OUTBOX_SINK_AMQP_DECLARE_EXCHANGE_KIND", Flag: "sink-amqp-declare-exchange-kind", Kind: KindString},
		"sink.redis.max_len":              {Env: "OUTBOX_SINK_REDIS_MAX_LEN", Flag: "sink-redis-max-len", Kind: KindInt, Default: "0"},
		"sinks":                           {Kind: KindSinks},
		"routes":                          {Kind: KindRoutes},
	} {
		s, ok := Lookup(path)
		want.Path, want.Doc, want.index = path, s.Doc, s.index
		if !ok || !reflect.DeepEqual(s, want) {
			t.Errorf("%s: %+v, want %+v", path, s, want)
		}
	}

	cfg, err := Load(LoadOptions{
		Getenv: env("OUTBOX_DATABASE_URL", pgURL, "OUTBOX_POLL_NOTIFY", "false", "OUTBOX_TOPICS", "notify.sms,notify.email",
			"OUTBOX_SINK_TYPE", "webhook", "OUTBOX_SINK_WEBHOOK_URL", "http://h/x", "OUTBOX_SINK_WEBHOOK_SECRETS", "a-secret, whsec_YWJj"),
		Flags: map[string]string{"relay.batch_timeout": "90s", "poll.max_batch_bytes": "1024", "sink.kafka.auto_create_topics": "true"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Poll.Notify || cfg.Relay.BatchTimeout != 90*time.Second || cfg.Poll.MaxBatchBytes != 1024 ||
		!cfg.Sink.Kafka.AutoCreateTopics || !slices.Equal(cfg.Topics, []string{"notify.sms", "notify.email"}) ||
		!slices.Equal(cfg.Sink.Webhook.Secrets, []Secret{"a-secret", "whsec_YWJj"}) {
		t.Fatalf("%+v", cfg)
	}
	if v, _ := cfg.Get("sink.webhook.secrets"); v != redacted {
		t.Fatalf("Get(sink.webhook.secrets) = %q", v)
	}
	c := Default()
	c.Sink.Webhook.URLs = map[string]URL{"b": "https://h/tok", "a": "http://u:pw@h:80"}
	if v, _ := c.Get("sink.webhook.urls"); v != "a=http://u:xxxxx@h:80,b=https://h/…" {
		t.Fatalf("Get(sink.webhook.urls) = %q", v)
	}

	for _, tt := range []struct {
		opts   LoadOptions
		field  string
		reason string
	}{
		{LoadOptions{Getenv: env("OUTBOX_DATABASE_URL", pgURL, "OUTBOX_POLL_NOTIFY", "nope")}, "poll.notify", "not a boolean"},
		{LoadOptions{Getenv: env("OUTBOX_DATABASE_URL", pgURL, "OUTBOX_POLL_MAX_BATCH_BYTES", "0")}, "poll.max_batch_bytes", "positive (from OUTBOX_POLL_MAX_BATCH_BYTES)"},
		{LoadOptions{Getenv: env("OUTBOX_DATABASE_URL", pgURL), Flags: map[string]string{"relay.batch_timeout": "0s"}}, "relay.batch_timeout", "positive (from --relay-batch-timeout)"},
		{LoadOptions{Getenv: env("OUTBOX_DATABASE_URL", pgURL), Flags: map[string]string{"sink.kafka.topics": "a=b"}}, "sink.kafka.topics", "only be set in the YAML file"},
		{LoadOptions{Getenv: env("OUTBOX_DATABASE_URL", pgURL), Flags: map[string]string{"routes": "a"}}, "routes", "only be set in the YAML file"},
		{LoadOptions{Getenv: env("OUTBOX_DATABASE_URL", pgURL, "OUTBOX_ROUTES", "a")}, "routes", "not with OUTBOX_ROUTES"},
		{LoadOptions{Getenv: env("OUTBOX_DATABASE_URL", pgURL, "OUTBOX_SINK_WEBHOOK_HEADERS", "a=b")}, "sink.webhook.headers", "YAML file"},
		{LoadOptions{Getenv: env("OUTBOX_DATABASE_URL", pgURL, "OUTBOX_TOPICS", "a,b\x01")}, "topics", "control character"},
		{LoadOptions{Getenv: env("OUTBOX_DATABASE_URL", pgURL, "OUTBOX_SINK_TYPE", "kafka")}, "sink.kafka.brokers", "required when sink.type is kafka"},
		{LoadOptions{Getenv: env("OUTBOX_DATABASE_URL", pgURL, "OUTBOX_SINK_KAFKA_SASL_PASSWORD", "hunter2", "OUTBOX_SINK_TYPE", "kafka",
			"OUTBOX_SINK_KAFKA_BROKERS", "k:9092")}, "sink.kafka.sasl_mechanism", "required"},
	} {
		_, err := Load(tt.opts)
		wantConfigError(t, err, tt.field, tt.reason)
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("error %q shows a secret", err)
		}
	}
	c = Default()
	wantConfigError(t, c.Set("sinks", "x"), "sinks", "YAML")
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://u:pw@h:5432/db?sslmode=disable": "postgres://u:xxxxx@h:5432/…",
		"amqp://127.0.0.1:5672/":                    "amqp://127.0.0.1:5672/",
		"https://hooks.example/T0/B0/tok":           "https://hooks.example/…",
		"https://tok@hooks.example":                 "https://xxxxx@hooks.example",
		"nats://a:4222, u:pw@b:4222":                "nats://a:4222,xxxxx@b:4222",
		"sqlite:data/outbox.db":                     "sqlite:data/outbox.db",
		"sqlite:///var/lib/outbox.db":               "sqlite:///var/lib/outbox.db",
		"":                                          "",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDocsExamples loads every YAML example of docs/configuration.md: each must use known keys
// only, and be valid once a database_url and the secrets are given (unless it elides a value
// with "...").
func TestDocsExamples(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(raw), "```yaml\n")[1:]
	if len(blocks) < 9 {
		t.Fatalf("only %d YAML examples", len(blocks))
	}
	for i, b := range blocks {
		example, _, _ := strings.Cut(b, "```")
		c := Default()
		c.DatabaseURL = pgURL
		if err := c.ApplyYAML([]byte(example)); err != nil {
			t.Errorf("example %d: %v\n%s", i+1, err, example)
			continue
		}
		if strings.Contains(example, "...") {
			continue
		}
		// Secrets come from the environment, as the examples advise.
		if err := c.ApplyEnv(env("OUTBOX_SINK_KAFKA_SASL_PASSWORD", "pw")); err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("example %d: %v\n%s", i+1, err, example)
		}
	}
}
