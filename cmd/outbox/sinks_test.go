package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/internal/testutil/service"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/sink/amqp"
	"github.com/outboxgo/outbox/sink/kafka"
	"github.com/outboxgo/outbox/sink/mqtt"
	natssink "github.com/outboxgo/outbox/sink/nats"
	redissink "github.com/outboxgo/outbox/sink/redis"
	"github.com/outboxgo/outbox/sink/webhook"
)

// writeConfig writes a YAML configuration file for the test.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "outbox.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// enqueue adds one message with the command and returns its id.
func enqueue(t *testing.T, in invocation, topic, key, data string) string {
	t.Helper()
	return strings.TrimSpace(in.run(t, "enqueue", "--topic", topic, "--key", key, "--data", data).want(t, 0).stdout)
}

// relayUntil runs the relay with args until cond holds, stops it as SIGINT does and returns
// its result (exit code 0 required).
func relayUntil(t *testing.T, in invocation, cond func(statusJSON) bool, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- in.runCtx(t, ctx, append([]string{"relay"}, args...)...) }()
	waitFor(t, func() bool {
		select {
		case r := <-done: // ended early: report why
			done <- r
			return true
		default:
		}
		return cond(statusJSONOf(t, in))
	})
	cancel()
	return (<-done).want(t, 0)
}

// TestRelayTopics runs a relay limited to some topics: it publishes those and leaves the
// others in the table, for their own relays.
func TestRelayTopics(t *testing.T) {
	t.Parallel()
	in := sqliteEnv(t)
	in.run(t, "migrate", "up").want(t, 0)
	sms := enqueue(t, in, "notify.sms", "u-1", `{"to":"+100"}`)
	email := enqueue(t, in, "notify.email", "u-1", `{"to":"a@example.com"}`)
	order := enqueue(t, in, "orders.created", "o-1", `{"n":1}`)

	r := relayUntil(t, in, func(s statusJSON) bool { return s.Pending == 1 },
		"--sink-type", "stdout", "--poll-interval", "10ms", "--topics", "notify.sms, orders.created")
	r.contains(t, `"id":"`+sms+`"`, `"id":"`+order+`"`, "relay started", `topics="[notify.sms orders.created]"`)
	if strings.Contains(r.stdout, email) || strings.Count(r.stdout, "\n") != 2 {
		t.Fatalf("published more than its topics:\n%s", r.stdout)
	}

	// The email channel's own relay, configured through the environment.
	emailOnly := in
	emailOnly.env = map[string]string{"OUTBOX_TOPICS": "notify.email"}
	for k, v := range in.env {
		emailOnly.env[k] = v
	}
	r = relayUntil(t, emailOnly, func(s statusJSON) bool { return s.Pending == 0 },
		"--sink-type", "stdout", "--poll-interval", "10ms", "--poll-notify=false")
	if !strings.Contains(r.stdout, email) || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("email relay published:\n%s", r.stdout)
	}
}

// hookRecorder is an HTTP endpoint that records the requests it acknowledges.
type hookRecorder struct {
	mu   sync.Mutex
	reqs []hookRequest
}

type hookRequest struct {
	header http.Header
	body   string
}

func (h *hookRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	h.reqs = append(h.reqs, hookRequest{header: r.Header.Clone(), body: string(body)})
	h.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookRecorder) requests() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookRequest(nil), h.reqs...)
}

// TestRelayRoutes routes topics to two sinks, stdout and a webhook, by pattern: each topic
// reaches its own sink, and a topic no route matches goes to the dead letters. No secret of
// the configuration appears in anything the command prints.
func TestRelayRoutes(t *testing.T) {
	t.Parallel()
	hooks := &hookRecorder{}
	srv := httptest.NewServer(hooks)
	t.Cleanup(srv.Close)
	const (
		secret      = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTAxMjM0NTY3" // "secret-signing-key-01234567"
		headerToken = "Bearer header-token-4711"
		urlToken    = "url-token-0815"
	)
	cfgFile := writeConfig(t, `
sinks:
  console: {type: stdout}
  sms-provider:
    type: webhook
    webhook:
      url: `+srv.URL+`/hook/`+urlToken+`
      secrets: [`+secret+`]
      headers: {Authorization: `+headerToken+`}
      source: sms-service
routes:
  - topic: "orders.*"
    sink: console
  - topic: notify.sms
    sink: sms-provider
`)
	in := sqliteEnv(t)
	in.env["OUTBOX_CONFIG"] = cfgFile
	in.run(t, "migrate", "up").want(t, 0)
	order := enqueue(t, in, "orders.created", "o-1", `{"n":1}`)
	sms := enqueue(t, in, "notify.sms", "u-1", `{"to":"+100"}`)
	deep := enqueue(t, in, "orders.created.v2", "o-1", `{"n":2}`) // orders.* is one token: no route
	order2 := enqueue(t, in, "orders.paid", "o-2", `{"n":3}`)

	r := relayUntil(t, in, func(s statusJSON) bool { return s.Pending == 0 && s.DeadLetters == 1 },
		"--poll-interval", "10ms", "--log-level", "debug")
	r.contains(t, `"id":"`+order+`"`, `"id":"`+order2+`"`, "sink=console(stdout),sms-provider(webhook)")
	if strings.Contains(r.stdout, sms) || strings.Contains(r.stdout, deep) {
		t.Fatalf("stdout has messages of other routes:\n%s", r.stdout)
	}

	reqs := hooks.requests()
	if len(reqs) != 1 {
		t.Fatalf("webhook got %d requests, want 1", len(reqs))
	}
	req := reqs[0]
	if req.header.Get("ce-id") != sms || req.header.Get("ce-source") != "sms-service" || req.body != `{"to":"+100"}` ||
		req.header.Get("Authorization") != headerToken {
		t.Fatalf("webhook request: %v %q", req.header, req.body)
	}
	if err := webhook.Verify(secret, req.header, []byte(req.body), time.Minute); err != nil {
		t.Fatalf("signature: %v", err)
	}

	dl := in.run(t, "dlq", "list").want(t, 0).contains(t, deep, "no route")
	for _, out := range []string{r.stdout, r.stderr, dl.stdout, dl.stderr} {
		for _, s := range []string{secret, "c2VjcmV0LXNpZ25pbmcta2V5LTAxMjM0NTY3", "header-token-4711", urlToken} {
			if strings.Contains(out, s) {
				t.Fatalf("output shows the secret %q:\n%s", s, out)
			}
		}
	}
}

// TestRelayKafka relays to an in-process Kafka cluster, configured by flags and env.
func TestRelayKafka(t *testing.T) {
	t.Parallel()
	cluster, err := kfake.NewCluster(kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	in := sqliteEnv(t)
	in.env["OUTBOX_SINK_KAFKA_BROKERS"] = strings.Join(cluster.ListenAddrs(), ",")
	in.run(t, "migrate", "up").want(t, 0)
	id := enqueue(t, in, "orders.created", "o-7", `{"n":7}`)
	relayUntil(t, in, func(s statusJSON) bool { return s.Pending == 0 },
		"--sink-type", "kafka", "--sink-kafka-topic-prefix", "prod.", "--sink-kafka-auto-create-topics",
		"--sink-kafka-source", "orders-service", "--poll-interval", "10ms")

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("prod.orders.created"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fetches := cl.PollRecords(ctx, 1)
	if err := fetches.Err(); err != nil {
		t.Fatal(err)
	}
	recs := fetches.Records()
	if len(recs) != 1 || string(recs[0].Key) != "o-7" || string(recs[0].Value) != `{"n":7}` {
		t.Fatalf("records %+v", recs)
	}
	headers := map[string]string{}
	for _, h := range recs[0].Headers {
		headers[h.Key] = string(h.Value)
	}
	if headers["ce_id"] != id || headers["ce_source"] != "orders-service" {
		t.Fatalf("headers %v", headers)
	}
}

// TestRelayRedis relays to Redis Streams, configured by the environment.
func TestRelayRedis(t *testing.T) {
	t.Parallel()
	service.Require(t, "Redis")
	rc := goredis.NewClient(&goredis.Options{Addr: config.DefaultRedisAddr})
	t.Cleanup(func() { _ = rc.Close() })
	prefix := "outbox-cmd-test:" + outbox.NewID().String() + ":"
	t.Cleanup(func() { rc.Del(context.Background(), prefix+"orders.created") })

	in := sqliteEnv(t)
	in.env["OUTBOX_SINK_TYPE"] = "redis"
	in.env["OUTBOX_SINK_REDIS_STREAM_PREFIX"] = prefix
	in.env["OUTBOX_SINK_REDIS_MAX_LEN"] = "100"
	in.env["OUTBOX_SINK_REDIS_APPROXIMATE"] = "true"
	in.run(t, "migrate", "up").want(t, 0)
	id := enqueue(t, in, "orders.created", "o-8", "x")
	relayUntil(t, in, func(s statusJSON) bool { return s.Pending == 0 }, "--poll-interval", "10ms")

	entries, err := rc.XRange(context.Background(), prefix+"orders.created", "-", "+").Result()
	if err != nil {
		t.Fatalf("reading the stream (is Redis running at %s?): %v", config.DefaultRedisAddr, err)
	}
	if len(entries) != 1 || entries[0].Values["id"] != id || entries[0].Values["data"] != "x" || entries[0].Values["subject"] != "o-8" {
		t.Fatalf("entries %+v", entries)
	}
}

// TestRelayAMQP relays to RabbitMQ's default exchange, on the default URL (guest login),
// into a queue named like the topic.
func TestRelayAMQP(t *testing.T) {
	t.Parallel()
	service.Require(t, "RabbitMQ")
	conn, err := amqp091.Dial(config.DefaultAMQPURL)
	if err != nil {
		t.Fatalf("connecting to RabbitMQ at %s: %v", config.DefaultAMQPURL, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	queue := "outbox-cmd-test." + outbox.NewID().String()
	if _, err := ch.QueueDeclare(queue, false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	in := sqliteEnv(t)
	in.env["OUTBOX_SINK_TYPE"] = "amqp"
	in.run(t, "migrate", "up").want(t, 0)
	id := enqueue(t, in, queue, "k", "amqp-body")
	relayUntil(t, in, func(s statusJSON) bool { return s.Pending == 0 }, "--poll-interval", "10ms", "--sink-amqp-source", "svc")
	d, ok, err := ch.Get(queue, true)
	if err != nil || !ok {
		t.Fatalf("get: %v %v", ok, err)
	}
	if string(d.Body) != "amqp-body" || d.MessageId != id || d.AppId != "svc" {
		t.Fatalf("delivery %+v", d)
	}
}

// TestRelayMQTT relays to the local MQTT broker on the default address: the broker's PUBACK
// acknowledges the message.
func TestRelayMQTT(t *testing.T) {
	t.Parallel()
	service.Require(t, "Mosquitto (MQTT)")
	in := sqliteEnv(t)
	in.run(t, "migrate", "up").want(t, 0)
	enqueue(t, in, "outbox-cmd-test.created", "k", "mqtt-body")
	relayUntil(t, in, func(s statusJSON) bool { return s.Pending == 0 && s.DeadLetters == 0 },
		"--poll-interval", "10ms", "--sink-type", "mqtt", "--sink-mqtt-topic-prefix", "outbox-test/")
}

// TestSinkConfigErrors checks that the command reports sink and routing mistakes naming the
// YAML path, exits 2, and does not echo secrets.
func TestSinkConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := "sqlite:" + filepath.Join(dir, "x.db")
	unknownSink := writeConfig(t, "sinks:\n  events: {type: stdout}\nroutes:\n  - {topic: 'orders.*', sink: events}\n  - {topic: notify.sms, sink: sms}\n")
	badPattern := writeConfig(t, "sinks:\n  events: {type: stdout}\nroutes:\n  - {topic: 'orders.>.x', sink: events}\n")
	namedKafka := writeConfig(t, "sinks:\n  events: {type: kafka, kafka: {sasl_password: hunter2-kafka}}\nroutes:\n  - {topic: '>', sink: events}\n")
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{name: "unknown sink in route", args: []string{"relay", "--config", unknownSink},
			want: []string{`routes[1].sink: unknown sink "sms"`, unknownSink}},
		{name: "bad pattern", args: []string{"relay", "--config", badPattern}, want: []string{"routes[0].topic: ", `">" must be the last token`}},
		{name: "kafka brokers", args: []string{"relay", "--sink-type", "kafka"},
			want: []string{"sink.kafka.brokers: required when sink.type is kafka"}},
		{name: "named kafka brokers", args: []string{"relay", "--config", namedKafka},
			want: []string{"sinks.events.kafka.brokers: required when sinks.events.type is kafka"}},
		{name: "kafka password without mechanism", env: map[string]string{"OUTBOX_SINK_KAFKA_SASL_PASSWORD": "hunter2-kafka"},
			args: []string{"relay", "--sink-type", "kafka", "--sink-kafka-brokers", "k:9092"}, want: []string{"sink.kafka.sasl_mechanism: required"}},
		{name: "amqp url", args: []string{"relay", "--sink-type", "amqp", "--sink-amqp-url", "http://u:hunter2-amqp@rabbit/"},
			want: []string{"sink.amqp.url: ", "scheme"}},
		{name: "mqtt credentials in url", args: []string{"relay", "--sink-type", "mqtt", "--sink-mqtt-broker", "tcp://u:hunter2-mqtt@b:1883"},
			want: []string{"sink.mqtt.broker: ", "username and password"}},
		{name: "webhook secret", env: map[string]string{"OUTBOX_SINK_WEBHOOK_SECRETS": "whsec_hunter2-webhook!"},
			args: []string{"relay", "--sink-type", "webhook", "--sink-webhook-url", "https://h/hunter2-path"},
			want: []string{"sink.webhook.secrets: secret 1", "OUTBOX_SINK_WEBHOOK_SECRETS"}},
		{name: "bool flag", args: []string{"relay", "--poll-notify=maybe"}, want: []string{"poll.notify: ", "not a boolean"}},
		{name: "batch bytes", args: []string{"relay", "--poll-max-batch-bytes", "0"}, want: []string{"poll.max_batch_bytes: must be positive"}},
		{name: "database password", args: []string{"status", "--database-url", "oracle://u:hunter2-db@h/db"},
			want: []string{"database_url: ", "xxxxx"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"OUTBOX_DATABASE_URL": db}
			for k, v := range tt.env {
				env[k] = v
			}
			r := invocation{env: env}.run(t, tt.args...).want(t, 2)
			r.contains(t, append([]string{"outbox: invalid configuration: "}, tt.want...)...)
			if strings.Contains(r.stdout+r.stderr, "hunter2") {
				t.Fatalf("output shows a secret:\n%s%s", r.stdout, r.stderr)
			}
		})
	}
}

// TestSinkConfigMapping checks that every field of each sink block reaches its sink
// package's Config, and that the configuration's defaults are the packages' own.
func TestSinkConfigMapping(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.DiscardHandler)
	d := config.DefaultSink()
	if got := natsConfig(d.NATS, time.Second, logger); got.URL != natssink.DefaultURL || got.Source != natssink.DefaultSource ||
		got.MaxPending != natssink.DefaultMaxPending || got.ReconnectWait != natssink.DefaultReconnectWait || got.PublishTimeout != time.Second {
		t.Errorf("nats defaults %+v", got)
	}
	if got := kafkaConfig(d.Kafka, logger); got.ClientID != kafka.DefaultClientID || got.Source != kafka.DefaultSource ||
		got.ProduceTimeout != kafka.DefaultProduceTimeout || got.MaxBufferedRecords != kafka.DefaultMaxBufferedRecords ||
		got.MaxMessageBytes != kafka.DefaultMaxMessageBytes || got.Compression != kafka.DefaultCompression {
		t.Errorf("kafka defaults %+v", got)
	}
	if got := amqpConfig(d.AMQP, logger); got.Source != amqp.DefaultSource || got.ConnectionName != amqp.DefaultConnectionName ||
		got.PublishTimeout != amqp.DefaultPublishTimeout || got.ConnectTimeout != amqp.DefaultConnectTimeout ||
		got.Heartbeat != amqp.DefaultHeartbeat || got.ReconnectWait != amqp.DefaultReconnectWait ||
		got.MaxMessageBytes != amqp.DefaultMaxMessageBytes || got.DeclareExchange != nil {
		t.Errorf("amqp defaults %+v", got)
	}
	if got := mqttConfig(d.MQTT, logger); got.Broker != mqtt.DefaultBroker || got.Source != mqtt.DefaultSource ||
		got.TopicSeparator != mqtt.DefaultTopicSeparator || got.KeepAlive != mqtt.DefaultKeepAlive ||
		got.ConnectTimeout != mqtt.DefaultConnectTimeout || got.PublishTimeout != mqtt.DefaultPublishTimeout ||
		got.ReconnectWait != mqtt.DefaultReconnectWait {
		t.Errorf("mqtt defaults %+v", got)
	}
	if got := redisConfig(d.Redis, logger); got.Addr != redissink.DefaultAddr || got.Source != redissink.DefaultSource ||
		got.PublishTimeout != redissink.DefaultPublishTimeout {
		t.Errorf("redis defaults %+v", got)
	}
	if got := webhookConfig(d.Webhook, logger); got.Timeout != webhook.DefaultTimeout ||
		got.MaxConcurrency != webhook.DefaultMaxConcurrency || got.Source != webhook.DefaultSource {
		t.Errorf("webhook defaults %+v", got)
	}
	if relay.DefaultBatchTimeout != config.DefaultBatchTimeout || poll.DefaultMaxBatchBytes != config.DefaultMaxBatchBytes {
		t.Error("relay defaults differ")
	}

	// Every field set in YAML reaches the sink's Config.
	cfg, err := config.Load(config.LoadOptions{File: writeConfig(t, `
database_url: sqlite:x.db
sink:
  kafka:
    {brokers: [a:1, b:2], client_id: c, source: s, topic_prefix: p., topics: {x: y}, auto_create_topics: true,
     tls_enabled: true, tls_ca_file: ca, tls_cert_file: cert, tls_key_file: key, tls_insecure_skip_verify: true,
     sasl_mechanism: PLAIN, sasl_user: u, sasl_password: pw, produce_timeout: 1s, max_buffered_records: 2,
     max_message_bytes: 1024, linger: 3ms, compression: lz4}
  amqp:
    {url: "amqps://u:pw@h/v", exchange: e, routing_key_prefix: r., routing_keys: {x: y}, source: s,
     declare_exchange: {kind: fanout, transient: true}, connection_name: c, publish_timeout: 1s,
     connect_timeout: 2s, heartbeat: 3s, reconnect_wait: 4ms, max_message_bytes: 5}
  mqtt:
    {broker: "ssl://h:1", client_id: c, username: u, password: pw, topic_prefix: p/, topic_separator: ".",
     source: s, keep_alive: 5s, connect_timeout: 1s, publish_timeout: 2s, reconnect_wait: 3ms}
  redis:
    {addr: "h:1", username: u, password: pw, db: 2, tls: true, source: s, stream_prefix: p:, streams: {x: y},
     max_len: 9, approximate: true, publish_timeout: 1s}
  webhook:
    {url: "https://h/a", urls: {x: "http://h/b"}, secrets: [s1, s2], headers: {X-A: b}, timeout: 1s,
     max_concurrency: 3, source: s}
`), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Sink
	for _, tt := range []struct {
		got, want any
	}{
		{kafkaConfig(s.Kafka, logger), kafka.Config{Brokers: []string{"a:1", "b:2"}, ClientID: "c", Source: "s", TopicPrefix: "p.",
			Topics: map[string]string{"x": "y"}, AutoCreateTopics: true, TLSEnabled: true, TLSCAFile: "ca", TLSCertFile: "cert",
			TLSKeyFile: "key", TLSInsecureSkipVerify: true, SASLMechanism: "PLAIN", SASLUser: "u", SASLPassword: "pw",
			ProduceTimeout: time.Second, MaxBufferedRecords: 2, MaxMessageBytes: 1024, Linger: 3 * time.Millisecond,
			Compression: "lz4", Logger: logger}},
		{amqpConfig(s.AMQP, logger), amqp.Config{URL: "amqps://u:pw@h/v", Exchange: "e", RoutingKeyPrefix: "r.",
			RoutingKeys: map[string]string{"x": "y"}, DeclareExchange: &amqp.Exchange{Kind: "fanout", Transient: true},
			Source: "s", ConnectionName: "c", PublishTimeout: time.Second, ConnectTimeout: 2 * time.Second,
			Heartbeat: 3 * time.Second, ReconnectWait: 4 * time.Millisecond, MaxMessageBytes: 5, Logger: logger}},
		{mqttConfig(s.MQTT, logger), mqtt.Config{Broker: "ssl://h:1", ClientID: "c", Username: "u", Password: "pw",
			TopicPrefix: "p/", TopicSeparator: ".", Source: "s", KeepAlive: 5 * time.Second, ConnectTimeout: time.Second,
			PublishTimeout: 2 * time.Second, ReconnectWait: 3 * time.Millisecond, Logger: logger}},
		{redisConfig(s.Redis, logger), redissink.Config{Addr: "h:1", Username: "u", Password: "pw", DB: 2, TLS: true,
			Source: "s", StreamPrefix: "p:", Streams: map[string]string{"x": "y"}, MaxLen: 9, Approximate: true,
			PublishTimeout: time.Second, Logger: logger}},
		{webhookConfig(s.Webhook, logger), webhook.Config{URL: "https://h/a", URLs: map[string]string{"x": "http://h/b"},
			Secrets: []string{"s1", "s2"}, Headers: map[string]string{"X-A": "b"}, Timeout: time.Second, MaxConcurrency: 3,
			Source: "s", Logger: logger}},
	} {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("got  %+v\nwant %+v", tt.got, tt.want)
		}
	}
}
