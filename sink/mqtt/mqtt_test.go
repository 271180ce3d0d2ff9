package mqtt_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
	mqttsink "github.com/outboxgo/outbox/sink/mqtt"
	"github.com/outboxgo/outbox/sink/sinktest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	sinktest.Run(t, func(t *testing.T) *sinktest.Harness {
		prefix := uniquePrefix()
		sub := subscribe(t, prefix, "/")
		s := newSink(t, mqttsink.Config{TopicPrefix: prefix, Source: "sinktest"})
		// Enqueue refuses control characters below 0x20 only; rows written by other
		// programs may hold anything. Mosquitto drops the connection over such a string.
		badHeader := sinktest.NewRecord("orders", "k", []byte("{}"))
		badHeader.Headers = map[string]string{"x-note": "tab\there"}
		badKey := sinktest.NewRecord("orders", "k\u0085", []byte("{}"))
		return &sinktest.Harness{
			Sink:     s,
			Topics:   []string{"orders", "users.created"},
			Receiver: sub,
			Source:   "sinktest",
			Permanent: []*outbox.Record{
				sinktest.NewRecord("orders.+", "k", []byte("{}")),
				sinktest.NewRecord("orders.#", "k", []byte("{}")),
				sinktest.NewRecord("orders\x00x", "k", []byte("{}")),
				sinktest.NewRecord("orders\xff", "k", []byte("{}")),
				sinktest.NewRecord(strings.Repeat("t", 65536), "k", []byte("{}")),
				badHeader,
				badKey,
			},
		}
	})
}

// TestEnvelope checks the exact MQTT message: topic, Content Type, the CloudEvents user
// properties and the user's headers.
func TestEnvelope(t *testing.T) {
	t.Parallel()
	prefix := uniquePrefix()
	sub := subscribe(t, prefix, "/")
	s := newSink(t, mqttsink.Config{TopicPrefix: prefix, Source: "svc-test"})
	r := sinktest.NewRecord("orders.created", "order-42", []byte(`{"total":12}`))
	r.Type = "com.example.order.created"
	r.Headers = map[string]string{
		"Content-Type": "application/json",
		"traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tenant":       "acme",
	}
	if err := publish(t, s, r)[0]; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := sub.next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Topic != prefix+"orders/created" || p.QoS != 1 || p.Retain {
		t.Errorf("topic %q QoS %d retain %v, want %q QoS 1", p.Topic, p.QoS, p.Retain, prefix+"orders/created")
	}
	if p.Properties == nil || p.Properties.ContentType != "application/json" {
		t.Fatalf("properties %+v, want Content Type application/json", p.Properties)
	}
	want := map[string]string{
		"id":          r.ID.String(),
		"source":      "svc-test",
		"specversion": "1.0",
		"type":        "com.example.order.created",
		"subject":     "order-42",
		"time":        r.CreatedAt.UTC().Format(time.RFC3339Nano),
		"outboxseq":   strconv.FormatInt(r.Seq, 10),
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tenant":      "acme",
	}
	got := map[string]string{}
	for _, up := range p.Properties.User {
		if _, dup := got[up.Key]; dup {
			t.Errorf("user property %q appears twice", up.Key)
		}
		got[up.Key] = up.Value
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("user property %s = %q, want %q", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected user property %s: %q", k, v)
		}
	}
	if !bytes.Equal(p.Payload, r.Payload) {
		t.Errorf("payload %q, want %q", p.Payload, r.Payload)
	}
}

// TestHeaderNotAnAttributeName: under the MQTT binding every user property is an attribute,
// so a header named X-Request-Id made the whole message unreadable as a CloudEvent. Such a
// header, and one named as an envelope attribute, fails the message permanently; the others
// of the batch go through.
func TestHeaderNotAnAttributeName(t *testing.T) {
	t.Parallel()
	prefix := uniquePrefix()
	sub := subscribe(t, prefix, "/")
	s := newSink(t, mqttsink.Config{TopicPrefix: prefix, Source: "svc-test"})
	var recs []*outbox.Record
	for _, name := range []string{"X-Request-Id", "Tenant", "request_id", "source"} {
		r := sinktest.NewRecord("orders", "k", []byte("{}"))
		r.Headers = map[string]string{name: "v"}
		recs = append(recs, r)
	}
	good := sinktest.NewRecord("orders", "k", []byte("{}"))
	good.Headers = map[string]string{"requestid": "v", "content-type": "application/json"}
	recs = append(recs, good)
	res := publish(t, s, recs...)
	for i, err := range res[:len(res)-1] {
		if !sink.IsPermanent(err) {
			t.Errorf("headers %v: got %v, want a permanent error", recs[i].Headers, err)
		}
	}
	if err := res[len(res)-1]; err != nil {
		t.Fatalf("valid attribute names: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := sub.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m.ID != good.ID.String() || m.Headers["requestid"] != "v" {
		t.Errorf("received %+v, want %s with requestid", m, good.ID)
	}
}

// TestTopicSeparator: "." keeps topics as they are; another separator replaces dots.
func TestTopicSeparator(t *testing.T) {
	t.Parallel()
	for _, sep := range []string{".", "::"} {
		prefix := uniquePrefix()
		sub := subscribe(t, prefix, sep)
		s := newSink(t, mqttsink.Config{TopicPrefix: prefix, TopicSeparator: sep})
		if err := publish(t, s, sinktest.NewRecord("a.b.c", "", nil))[0]; err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		p, err := sub.next(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if want := prefix + strings.ReplaceAll("a.b.c", ".", sep); p.Topic != want {
			t.Errorf("separator %q: topic %q, want %q", sep, p.Topic, want)
		}
	}
}

// TestNoSubscribers: "no matching subscribers" (0x10) is a success.
func TestNoSubscribers(t *testing.T) {
	t.Parallel()
	s := newSink(t, mqttsink.Config{TopicPrefix: uniquePrefix()})
	if err := publish(t, s, sinktest.NewRecord("nobody.listens", "k", []byte("x")))[0]; err != nil {
		t.Errorf("publish without subscribers: %v", err)
	}
}

// TestReservedTopic: with no prefix, a topic starting with $ is refused before sending;
// the broker would answer not authorized ($SYS) or treat it as its own.
func TestReservedTopic(t *testing.T) {
	t.Parallel()
	s := newSink(t, mqttsink.Config{})
	res := publish(t, s, sinktest.NewRecord("$SYS.outbox", "k", nil), sinktest.NewRecord("outbox-test.reserved", "k", nil))
	if !sink.IsPermanent(res[0]) || !strings.Contains(res[0].Error(), "reserved") {
		t.Errorf("$SYS topic: %v, want a permanent error", res[0])
	}
	if res[1] != nil {
		t.Errorf("normal topic: %v", res[1])
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   mqttsink.Config
		field string
	}{
		{"bad scheme", mqttsink.Config{Broker: "ws://localhost:8080"}, "broker"},
		{"bad url", mqttsink.Config{Broker: "tcp://[::1"}, "broker"},
		{"no host", mqttsink.Config{Broker: "tcp://:1883"}, "broker"},
		{"credentials in url", mqttsink.Config{Broker: "tcp://user:secret@localhost:1883"}, "broker"},
		{"path", mqttsink.Config{Broker: "tcp://localhost:1883/x"}, "broker"},
		{"control char in client id", mqttsink.Config{ClientID: "relay\n"}, "client_id"},
		{"long client id", mqttsink.Config{ClientID: strings.Repeat("c", 65536)}, "client_id"},
		{"invalid username", mqttsink.Config{Username: "\xff"}, "username"},
		{"password without username", mqttsink.Config{Password: "secret"}, "username"},
		{"wildcard prefix", mqttsink.Config{TopicPrefix: "a/+/"}, "topic_prefix"},
		{"hash prefix", mqttsink.Config{TopicPrefix: "a/#"}, "topic_prefix"},
		{"dollar prefix", mqttsink.Config{TopicPrefix: "$SYS/"}, "topic_prefix"},
		{"nul prefix", mqttsink.Config{TopicPrefix: "a\x00"}, "topic_prefix"},
		{"wildcard separator", mqttsink.Config{TopicSeparator: "+"}, "topic_separator"},
		{"control char in source", mqttsink.Config{Source: "svc\t"}, "source"},
		{"negative keep alive", mqttsink.Config{KeepAlive: -time.Second}, "keep_alive"},
		{"sub-second keep alive", mqttsink.Config{KeepAlive: time.Millisecond}, "keep_alive"},
		{"huge keep alive", mqttsink.Config{KeepAlive: 70000 * time.Second}, "keep_alive"},
		{"negative connect timeout", mqttsink.Config{ConnectTimeout: -1}, "connect_timeout"},
		{"negative publish timeout", mqttsink.Config{PublishTimeout: -1}, "publish_timeout"},
		{"negative reconnect wait", mqttsink.Config{ReconnectWait: -1}, "reconnect_wait"},
		{"long prefix", mqttsink.Config{TopicPrefix: strings.Repeat("p", 65536)}, "topic_prefix"},
		{"long separator", mqttsink.Config{TopicSeparator: strings.Repeat("/", 65536)}, "topic_separator"},
		{"long source", mqttsink.Config{Source: strings.Repeat("s", 65536)}, "source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var vce *outbox.ConfigError
			if err := tc.cfg.Validate(); !errors.As(err, &vce) || vce.Field != tc.field {
				t.Errorf("Validate: %v, want a ConfigError for field %q", err, tc.field)
			}
			s, err := mqttsink.New(context.Background(), tc.cfg)
			if err == nil {
				_ = s.Close()
				t.Fatal("New accepted an invalid config")
			}
			var ce *outbox.ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, outbox.ErrInvalidConfig) {
				t.Errorf("error %v, want a ConfigError for field %q wrapping ErrInvalidConfig", err, tc.field)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Errorf("error reveals the password: %v", err)
			}
		})
	}
}

// TestClose: Close is idempotent, and Publish afterwards fails retryably with ErrClosed.
func TestClose(t *testing.T) {
	t.Parallel()
	s := newSink(t, mqttsink.Config{})
	for i := 0; i < 2; i++ {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	res := publish(t, s, sinktest.NewRecord("orders", "k", nil))
	if !errors.Is(res[0], mqttsink.ErrClosed) || !sink.IsUnavailable(res[0]) {
		t.Errorf("Publish after Close: %v, want an Unavailable ErrClosed", res[0])
	}
}

// TestDefaultClientID: every sink gets its own client id, so that two relays do not
// disconnect each other.
func TestDefaultClientID(t *testing.T) {
	t.Parallel()
	a := newSink(t, mqttsink.Config{})
	b := newSink(t, mqttsink.Config{})
	if a.ClientID() == b.ClientID() || !strings.HasPrefix(a.ClientID(), "outbox-") {
		t.Errorf("client ids %q and %q", a.ClientID(), b.ClientID())
	}
	for _, s := range []*mqttsink.Sink{a, b} {
		if err := publish(t, s, sinktest.NewRecord("outbox-test.ids", "k", nil))[0]; err != nil {
			t.Errorf("%s: %v", s.ClientID(), err)
		}
	}
}
