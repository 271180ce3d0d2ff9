package kafka_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
	kafkasink "github.com/outboxgo/outbox/sink/kafka"
	"github.com/outboxgo/outbox/sink/sinktest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	sinktest.Run(t, func(t *testing.T) *sinktest.Harness {
		prefix := uniqueName("conf") + "."
		topics := []string{"orders", "users.created"}
		for _, topic := range topics {
			createTopic(t, c, prefix+topic, 3, nil)
		}
		// A topic whose brokers take smaller batches than the client builds: a message
		// that fits the client's limit but not the topic's is refused by the broker.
		small := uniqueName("small")
		createTopic(t, c, small, 1, map[string]string{"max.message.bytes": "2048"})
		s := newSink(t, kafkasink.Config{
			Brokers:     c.ListenAddrs(),
			TopicPrefix: prefix,
			Topics:      map[string]string{"small": small},
			Source:      "sinktest",
		})
		return &sinktest.Harness{
			Sink:     s,
			Topics:   topics,
			Receiver: newReceiver(t, c, prefix, topics),
			Source:   "sinktest",
			Permanent: []*outbox.Record{
				sinktest.NewRecord("orders", "k", make([]byte, kafkasink.DefaultMaxMessageBytes)),
				sinktest.NewRecord("small", "k", randomBytes(4096)), // incompressible
				sinktest.NewRecord("orders with spaces", "k", []byte("{}")),
				sinktest.NewRecord("orders/created", "k", []byte("{}")),
				sinktest.NewRecord("orders:created", "k", []byte("{}")),
				sinktest.NewRecord(strings.Repeat("o", 250), "k", []byte("{}")),
			},
		}
	})
}

// TestEnvelope checks the exact Kafka record: key, value and the CloudEvents binding's
// headers plus the user's.
func TestEnvelope(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	topic := uniqueName("env")
	createTopic(t, c, topic, 3, nil)
	s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(), Source: "svc-test"})
	r := sinktest.NewRecord(topic, "order-42", []byte(`{"total":12}`))
	r.Type = "com.example.order.created"
	r.Headers = map[string]string{
		"Content-Type": "application/json",
		"traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"X-Tenant":     "acme",
	}
	requireOK(t, publish(t, s, r))
	got := readAll(t, c, topic)
	if len(got) != 1 {
		t.Fatalf("topic holds %d records, want 1", len(got))
	}
	m := got[0]
	if string(m.Key) != "order-42" {
		t.Errorf("key %q, want the message key", m.Key)
	}
	if !bytes.Equal(m.Value, r.Payload) {
		t.Errorf("value %q, want %q", m.Value, r.Payload)
	}
	want := map[string]string{
		"ce_id":          r.ID.String(),
		"ce_source":      "svc-test",
		"ce_specversion": "1.0",
		"ce_type":        "com.example.order.created",
		"ce_subject":     "order-42",
		"ce_time":        r.CreatedAt.UTC().Format(time.RFC3339Nano),
		"ce_outboxseq":   strconv.FormatInt(r.Seq, 10),
		"content-type":   "application/json",
		"traceparent":    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"X-Tenant":       "acme",
	}
	seen := map[string]int{}
	for _, h := range m.Headers {
		seen[h.Key]++
		if v, ok := want[h.Key]; !ok {
			t.Errorf("unexpected header %s: %q", h.Key, h.Value)
		} else if string(h.Value) != v {
			t.Errorf("header %s = %q, want %q", h.Key, h.Value, v)
		}
	}
	for name := range want {
		if seen[name] != 1 {
			t.Errorf("header %s appears %d times, want once", name, seen[name])
		}
	}
}

// TestEnvelopeNoKey: without a key the record has a null key and no ce_subject; without
// Type, ce_type is the topic; an empty payload is a record without value (a tombstone).
func TestEnvelopeNoKey(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	topic := uniqueName("nokey")
	createTopic(t, c, topic, 3, nil)
	s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs()})
	r := sinktest.NewRecord(topic, "", nil)
	requireOK(t, publish(t, s, r))
	got := readAll(t, c, topic)
	if len(got) != 1 {
		t.Fatalf("topic holds %d records, want 1", len(got))
	}
	m := got[0]
	if m.Key != nil {
		t.Errorf("key %q, want null", m.Key)
	}
	if m.Value != nil {
		t.Errorf("value %q, want null", m.Value)
	}
	if v, ok := header(m, "ce_subject"); ok {
		t.Errorf("ce_subject = %q, want none", v)
	}
	if v, _ := header(m, "ce_type"); v != topic {
		t.Errorf("ce_type = %q, want the topic", v)
	}
	if v, _ := header(m, "ce_source"); v != kafkasink.DefaultSource {
		t.Errorf("ce_source = %q, want the default %q", v, kafkasink.DefaultSource)
	}
	if v, ok := header(m, "content-type"); ok {
		t.Errorf("content-type = %q, want none", v)
	}
}

// TestKeyPartition: the messages of one key land on one partition, in order.
func TestKeyPartition(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	topic := uniqueName("keys")
	createTopic(t, c, topic, 8, nil)
	s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs()})
	var recs []*outbox.Record
	for i := 0; i < 20; i++ {
		for k := 0; k < 10; k++ {
			recs = append(recs, sinktest.NewRecord(topic, "key-"+string(rune('a'+k)), []byte{byte(i)}))
		}
	}
	requireOK(t, publish(t, s, recs...))
	got := readAll(t, c, topic)
	if len(got) != len(recs) {
		t.Fatalf("topic holds %d records, want %d", len(got), len(recs))
	}
	part := map[string]int32{}
	next := map[string]byte{}
	for _, m := range got {
		k := string(m.Key)
		if p, ok := part[k]; ok && p != m.Partition {
			t.Errorf("key %s on partitions %d and %d", k, p, m.Partition)
		}
		part[k] = m.Partition
		if m.Value[0] != next[k] {
			t.Errorf("key %s: record %d where %d was next", k, m.Value[0], next[k])
		}
		next[k] = m.Value[0] + 1
	}
}

// TestTopicMapping: Topics maps exactly and takes precedence over TopicPrefix.
func TestTopicMapping(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	prefix := uniqueName("pfx") + "."
	mapped := uniqueName("mapped")
	createTopic(t, c, prefix+"orders", 1, nil)
	createTopic(t, c, mapped, 1, nil)
	s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(), TopicPrefix: prefix, Topics: map[string]string{"audit": mapped}})
	requireOK(t, publish(t, s,
		sinktest.NewRecord("orders", "k", []byte("1")),
		sinktest.NewRecord("audit", "k", []byte("2"))))
	if got := readAll(t, c, prefix+"orders"); len(got) != 1 || string(got[0].Value) != "1" {
		t.Errorf("prefixed topic holds %d records", len(got))
	}
	if got := readAll(t, c, mapped); len(got) != 1 || string(got[0].Value) != "2" {
		t.Errorf("mapped topic holds %d records", len(got))
	}
}

// TestUnknownTopic: a topic that does not exist fails retryably, saying so, within the
// produce timeout.
func TestUnknownTopic(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	const timeout = 3 * time.Second
	s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(), ProduceTimeout: timeout})
	topic := uniqueName("missing")
	start := time.Now()
	res := publish(t, s, sinktest.NewRecord(topic, "k", []byte("{}")), sinktest.NewRecord(topic, "", []byte("{}")))
	d := time.Since(start)
	for i, err := range res {
		if !sink.IsUnavailable(err) {
			t.Fatalf("message %d: %v, want an Unavailable error", i, err)
		}
		if !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("message %d: %q does not say the topic does not exist", i, err)
		}
	}
	if d > timeout+time.Second {
		t.Errorf("took %s, more than the produce timeout %s", d, timeout)
	}
	t.Logf("unknown topic reported after %s: %v", d, res[0])

	// Once the topic exists, publishing works.
	createTopic(t, c, topic, 1, nil)
	deadline := time.Now().Add(20 * time.Second)
	for {
		res := publish(t, s, sinktest.NewRecord(topic, "k", []byte("{}")))
		if res[0] == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after the topic was created: %v", res[0])
		}
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	brokers := []string{"127.0.0.1:9092"}
	tests := []struct {
		name    string
		cfg     kafkasink.Config
		field   string
		newOnly bool // a file New reads: Validate does not
	}{
		{"no brokers", kafkasink.Config{}, "brokers", false},
		{"empty broker", kafkasink.Config{Brokers: []string{""}}, "brokers", false},
		{"broker with space", kafkasink.Config{Brokers: []string{"a b:9092"}}, "brokers", false},
		{"long client id", kafkasink.Config{Brokers: brokers, ClientID: strings.Repeat("c", 257)}, "client_id", false},
		{"control char in source", kafkasink.Config{Brokers: brokers, Source: "svc\n"}, "source", false},
		{"prefix with space", kafkasink.Config{Brokers: brokers, TopicPrefix: "a b."}, "topic_prefix", false},
		{"prefix with slash", kafkasink.Config{Brokers: brokers, TopicPrefix: "a/"}, "topic_prefix", false},
		{"prefix too long", kafkasink.Config{Brokers: brokers, TopicPrefix: strings.Repeat("p", 249)}, "topic_prefix", false},
		{"mapping to bad topic", kafkasink.Config{Brokers: brokers, Topics: map[string]string{"a": "b c"}}, "topics", false},
		{"mapping to dot", kafkasink.Config{Brokers: brokers, Topics: map[string]string{"a": ".."}}, "topics", false},
		{"mapping from empty", kafkasink.Config{Brokers: brokers, Topics: map[string]string{"": "b"}}, "topics", false},
		{"tls and tls files", kafkasink.Config{Brokers: brokers, TLS: tlsConfigForTest(), TLSCAFile: "ca.pem"}, "tls", false},
		{"cert without key", kafkasink.Config{Brokers: brokers, TLSCertFile: "c.pem"}, "tls_key_file", false},
		{"key without cert", kafkasink.Config{Brokers: brokers, TLSKeyFile: "k.pem"}, "tls_cert_file", false},
		{"missing ca file", kafkasink.Config{Brokers: brokers, TLSCAFile: "/nonexistent/ca.pem"}, "tls_ca_file", true},
		{"missing cert file", kafkasink.Config{Brokers: brokers, TLSCertFile: "/nonexistent/c.pem", TLSKeyFile: "/nonexistent/k.pem"}, "tls_cert_file", true},
		{"unknown sasl", kafkasink.Config{Brokers: brokers, SASLMechanism: "GSSAPI", SASLUser: "u", SASLPassword: "p"}, "sasl_mechanism", false},
		{"sasl without user", kafkasink.Config{Brokers: brokers, SASLMechanism: "PLAIN", SASLPassword: "p"}, "sasl_user", false},
		{"sasl without password", kafkasink.Config{Brokers: brokers, SASLMechanism: "SCRAM-SHA-256", SASLUser: "u"}, "sasl_password", false},
		{"user without sasl", kafkasink.Config{Brokers: brokers, SASLUser: "u", SASLPassword: "p"}, "sasl_mechanism", false},
		{"negative timeout", kafkasink.Config{Brokers: brokers, ProduceTimeout: -time.Second}, "produce_timeout", false},
		{"negative buffered", kafkasink.Config{Brokers: brokers, MaxBufferedRecords: -1}, "max_buffered_records", false},
		{"tiny max message", kafkasink.Config{Brokers: brokers, MaxMessageBytes: 100}, "max_message_bytes", false},
		{"huge max message", kafkasink.Config{Brokers: brokers, MaxMessageBytes: 1<<30 + 1}, "max_message_bytes", false},
		{"negative linger", kafkasink.Config{Brokers: brokers, Linger: -1}, "linger", false},
		{"unknown compression", kafkasink.Config{Brokers: brokers, Compression: "brotli"}, "compression", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var vce *outbox.ConfigError
			switch err := tc.cfg.Validate(); {
			case tc.newOnly && err != nil:
				t.Errorf("Validate: %v, want nil (only New reads the files)", err)
			case !tc.newOnly && (!errors.As(err, &vce) || vce.Field != tc.field):
				t.Errorf("Validate: %v, want a ConfigError for field %q", err, tc.field)
			}
			s, err := kafkasink.New(context.Background(), tc.cfg)
			if err == nil {
				_ = s.Close()
				t.Fatal("New accepted an invalid config")
			}
			var ce *outbox.ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, outbox.ErrInvalidConfig) {
				t.Errorf("error %v, want a ConfigError for field %q wrapping ErrInvalidConfig", err, tc.field)
			}
		})
	}
}

// TestConfigSecretNotInErrors: the SASL password appears in no validation error.
func TestConfigSecretNotInErrors(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-pa55word"
	for _, cfg := range []kafkasink.Config{
		{Brokers: []string{"127.0.0.1:9092"}, SASLMechanism: "KERBEROS", SASLUser: "u", SASLPassword: secret},
		{Brokers: []string{"127.0.0.1:9092"}, SASLPassword: secret},
		{Brokers: []string{"a b"}, SASLMechanism: "PLAIN", SASLUser: "u", SASLPassword: secret},
	} {
		_, err := kafkasink.New(context.Background(), cfg)
		if err == nil {
			t.Fatal("New accepted an invalid config")
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains the password", err)
		}
	}
}

func TestConfigAccepted(t *testing.T) {
	t.Parallel()
	for _, cfg := range []kafkasink.Config{
		{Brokers: []string{"127.0.0.1:9092"}},
		{Brokers: []string{"localhost"}, Compression: "ZSTD", SASLMechanism: "scram-sha-512", SASLUser: "u", SASLPassword: "p"},
		{Brokers: []string{"a:1", "b:2"}, Compression: "none", TLSEnabled: true, Linger: time.Millisecond, MaxMessageBytes: 512},
		{Brokers: []string{"a:1"}, TopicPrefix: "svc.", Topics: map[string]string{"x": "y_z-1.2"}, Compression: "lz4"},
		{Brokers: []string{"a:1"}, TLS: tlsConfigForTest(), Compression: "gzip"},
	} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", cfg, err)
		}
		s, err := kafkasink.New(context.Background(), cfg)
		if err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
			continue
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}
}

// TestClose: Close is idempotent, and Publish afterwards fails retryably with ErrClosed.
func TestClose(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	topic := uniqueName("close")
	createTopic(t, c, topic, 1, nil)
	s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs()})
	requireOK(t, publish(t, s, sinktest.NewRecord(topic, "k", nil)))
	for i := 0; i < 3; i++ {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	res := publish(t, s, sinktest.NewRecord(topic, "k", nil))
	if !errors.Is(res[0], kafkasink.ErrClosed) || !sink.IsUnavailable(res[0]) {
		t.Errorf("Publish after Close: %v, want an Unavailable ErrClosed", res[0])
	}
}

// TestCloseDuringPublish: Close waits for a running Publish, which returns its results.
func TestCloseDuringPublish(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	topic := uniqueName("closepub")
	createTopic(t, c, topic, 3, nil)
	s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs()})
	recs := make([]*outbox.Record, 2000)
	for i := range recs {
		recs[i] = sinktest.NewRecord(topic, "k"+string(rune('a'+i%20)), []byte("{}"))
	}
	done := make(chan []error)
	go func() { done <- s.Publish(context.Background(), recs) }()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if len(res) != len(recs) {
		t.Fatalf("%d results for %d messages", len(res), len(recs))
	}
	for i, err := range res {
		if err != nil && (sink.IsPermanent(err)) {
			t.Errorf("message %d: %v", i, err)
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// TestAutoCreateTopics: with AutoCreateTopics, brokers that allow it create a missing topic.
func TestAutoCreateTopics(t *testing.T) {
	t.Parallel()
	c := newCluster(t, kfake.AllowAutoTopicCreation())
	topic := uniqueName("auto")
	s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(), AutoCreateTopics: true})
	recs := keyedBatch(topic, "k", 3, 9)
	requireOK(t, publish(t, s, recs...))
	checkLog(t, readAll(t, c, topic), recs)
}
