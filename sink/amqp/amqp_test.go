package amqp_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/service"
	"github.com/outboxgo/outbox/sink"
	amqpsink "github.com/outboxgo/outbox/sink/amqp"
	"github.com/outboxgo/outbox/sink/sinktest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	sinktest.Run(t, func(t *testing.T) *sinktest.Harness {
		tp := newTopology(t, nil)
		const maxBytes = 1 << 20
		s := newSink(t, amqpsink.Config{
			Exchange:         tp.exchange,
			RoutingKeyPrefix: tp.prefix,
			Source:           "sinktest",
			MaxMessageBytes:  maxBytes,
		})
		// Enqueue refuses a 257-byte header name, but rows written by other programs may
		// have one; AMQP table keys end at 255 bytes.
		longHeader := sinktest.NewRecord("orders", "k", []byte("{}"))
		longHeader.Headers = map[string]string{strings.Repeat("h", 256): "x"}
		return &sinktest.Harness{
			Sink:     s,
			Topics:   []string{"orders", "users.created"},
			Receiver: tp.receiver(t),
			Source:   "sinktest",
			Permanent: []*outbox.Record{
				sinktest.NewRecord("orders", "k", make([]byte, maxBytes+1)),
				sinktest.NewRecord(strings.Repeat("t", 256), "k", []byte("{}")), // routing key > 255 bytes
				longHeader,
			},
		}
	})
}

// TestEnvelope checks the exact AMQP message: properties, the cloudEvents: application
// properties and the user's headers.
func TestEnvelope(t *testing.T) {
	t.Parallel()
	tp := newTopology(t, nil)
	s := newSink(t, amqpsink.Config{Exchange: tp.exchange, RoutingKeyPrefix: tp.prefix, Source: "svc-test"})
	r := sinktest.NewRecord("orders.created", "order-42", []byte(`{"total":12}`))
	r.Type = "com.example.order.created"
	r.Headers = map[string]string{"Content-Type": "application/json", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "X-Tenant": "acme"}
	if err := publish(t, s, r)[0]; err != nil {
		t.Fatal(err)
	}
	d := get(t, channel(t, tp.conn), tp.queue)
	if d.RoutingKey != "app.orders.created" || d.Exchange != tp.exchange {
		t.Errorf("routed via %q/%q, want %q/app.orders.created", d.Exchange, d.RoutingKey, tp.exchange)
	}
	props := map[string]any{
		"MessageId":    d.MessageId,
		"Type":         d.Type,
		"AppId":        d.AppId,
		"ContentType":  d.ContentType,
		"DeliveryMode": d.DeliveryMode,
		"Timestamp":    d.Timestamp.UTC(),
	}
	wantProps := map[string]any{
		"MessageId":    r.ID.String(),
		"Type":         "com.example.order.created",
		"AppId":        "svc-test",
		"ContentType":  "application/json",
		"DeliveryMode": amqp091.Persistent,
		"Timestamp":    r.CreatedAt.Truncate(time.Second), // AMQP timestamps are in seconds
	}
	for k, want := range wantProps {
		if props[k] != want {
			t.Errorf("property %s = %v, want %v", k, props[k], want)
		}
	}
	want := map[string]string{
		"cloudEvents:id":          r.ID.String(),
		"cloudEvents:source":      "svc-test",
		"cloudEvents:specversion": "1.0",
		"cloudEvents:type":        "com.example.order.created",
		"cloudEvents:subject":     "order-42",
		"cloudEvents:time":        r.CreatedAt.UTC().Format(time.RFC3339Nano),
		"cloudEvents:outboxseq":   strconv.FormatInt(r.Seq, 10),
		"traceparent":             "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"X-Tenant":                "acme",
	}
	for name, v := range want {
		if got, ok := d.Headers[name].(string); !ok || got != v {
			t.Errorf("header %s = %#v, want %q", name, d.Headers[name], v)
		}
	}
	for name, v := range d.Headers {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected header %s: %#v", name, v)
		}
	}
	if !bytes.Equal(d.Body, r.Payload) {
		t.Errorf("body %q, want %q", d.Body, r.Payload)
	}
}

// TestEnvelopeNoKey: without a key there is no cloudEvents:subject; without Type, type is
// the topic; without a content-type header there is no content type.
func TestEnvelopeNoKey(t *testing.T) {
	t.Parallel()
	tp := newTopology(t, nil)
	s := newSink(t, amqpsink.Config{Exchange: tp.exchange, RoutingKeyPrefix: tp.prefix})
	r := sinktest.NewRecord("audit", "", []byte("raw"))
	if err := publish(t, s, r)[0]; err != nil {
		t.Fatal(err)
	}
	d := get(t, channel(t, tp.conn), tp.queue)
	if v, ok := d.Headers["cloudEvents:subject"]; ok {
		t.Errorf("cloudEvents:subject = %#v, want none", v)
	}
	if v := d.Headers["cloudEvents:type"]; v != "audit" || d.Type != "audit" {
		t.Errorf("type = %#v / %q, want the topic", v, d.Type)
	}
	if v := d.Headers["cloudEvents:source"]; v != amqpsink.DefaultSource {
		t.Errorf("source = %#v, want the default %q", v, amqpsink.DefaultSource)
	}
	if d.ContentType != "" {
		t.Errorf("content type %q, want none", d.ContentType)
	}
}

// TestUnroutable: a message no queue is bound for is returned by the broker, which acks it
// too. It must fail (retryably, so that it is retried and eventually dead-lettered), and
// the routable messages around it succeed.
func TestUnroutable(t *testing.T) {
	t.Parallel()
	conn := dial(t)
	ch := channel(t, conn)
	ex, q := uniqueName("direct"), uniqueName("q")
	if err := ch.ExchangeDeclare(ex, "direct", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(q, false, false, true, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q, "bound", ex, false, nil); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, amqpsink.Config{Exchange: ex})
	recs := []*outbox.Record{
		sinktest.NewRecord("bound", "k1", []byte("1")),
		sinktest.NewRecord("nowhere", "k2", []byte("2")),
		sinktest.NewRecord("bound", "k3", []byte("3")),
		sinktest.NewRecord("nowhere", "k4", []byte("4")),
		sinktest.NewRecord("bound", "k5", []byte("5")),
	}
	for round := 0; round < 2; round++ { // the second time on a channel with returns behind it
		res := publish(t, s, recs...)
		for i, err := range res {
			if recs[i].Topic == "bound" {
				if err != nil {
					t.Errorf("round %d: routable message %d: %v", round, i, err)
				}
				continue
			}
			switch {
			case err == nil:
				t.Errorf("round %d: unroutable message %d reported as published", round, i)
			case sink.IsPermanent(err) || sink.IsUnavailable(err) || !errors.Is(err, amqpsink.ErrUnroutable):
				t.Errorf("round %d: unroutable message %d: %v, want a retryable (counted, not unavailable) ErrUnroutable", round, i, err)
			case !strings.Contains(err.Error(), ex) || !strings.Contains(err.Error(), `"nowhere"`):
				t.Errorf("round %d: error %q does not name the exchange and routing key", round, err)
			}
		}
	}
	for i := 0; i < 6; i++ {
		if d := get(t, ch, q); d.RoutingKey != "bound" {
			t.Errorf("queue got a message with routing key %q", d.RoutingKey)
		}
	}

	// The default exchange routes by queue name.
	s2 := newSink(t, amqpsink.Config{RoutingKeys: map[string]string{"orders": q}})
	res := publish(t, s2, sinktest.NewRecord("orders", "k", nil), sinktest.NewRecord(uniqueName("missing"), "k", nil))
	if res[0] != nil {
		t.Errorf("to the queue by name: %v", res[0])
	}
	if !errors.Is(res[1], amqpsink.ErrUnroutable) || !strings.Contains(res[1].Error(), "no queue named") {
		t.Errorf("to a missing queue: %v, want ErrUnroutable naming the queue", res[1])
	}
}

// TestNacked: a full queue with x-overflow=reject-publish makes the broker nack: Unavailable
// (backpressure, not the message's fault).
func TestNacked(t *testing.T) {
	t.Parallel()
	conn := dial(t)
	ch := channel(t, conn)
	q := uniqueName("full")
	if _, err := ch.QueueDeclare(q, false, false, true, false, amqp091.Table{"x-max-length": int32(1), "x-overflow": "reject-publish"}); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, amqpsink.Config{RoutingKeys: map[string]string{"orders": q}})
	res := publish(t, s,
		sinktest.NewRecord("orders", "k1", []byte("1")),
		sinktest.NewRecord("orders", "k2", []byte("2")),
		sinktest.NewRecord("orders", "k3", []byte("3")))
	if res[0] != nil {
		t.Errorf("first message: %v", res[0])
	}
	for _, err := range res[1:] {
		if !errors.Is(err, amqpsink.ErrNacked) || !sink.IsUnavailable(err) {
			t.Errorf("message over the queue's limit: %v, want an Unavailable ErrNacked", err)
		}
	}
	// Room again: the retry goes through.
	get(t, ch, q)
	if err := publish(t, s, sinktest.NewRecord("orders", "k2", []byte("2")))[0]; err != nil {
		t.Errorf("after the queue drained: %v", err)
	}
}

// TestMissingExchange: publishing to an exchange that does not exist makes the broker close
// the channel (404). The messages fail as Unavailable with advice; once the exchange exists the
// sink has reconnected and publishes.
func TestMissingExchange(t *testing.T) {
	t.Parallel()
	ex := uniqueName("later")
	s := newSink(t, amqpsink.Config{Exchange: ex, ReconnectWait: 20 * time.Millisecond})
	res := publish(t, s, sinktest.NewRecord("orders", "k", nil), sinktest.NewRecord("orders", "k", nil))
	for i, err := range res {
		if !sink.IsUnavailable(err) {
			t.Fatalf("message %d to a missing exchange: %v, want an Unavailable error", i, err)
		}
	}
	if !strings.Contains(res[0].Error(), "no exchange") || !strings.Contains(res[0].Error(), "DeclareExchange") {
		t.Errorf("error %q does not explain the missing exchange", res[0])
	}
	t.Logf("missing exchange: %v", res[0])

	conn := dial(t)
	ch := channel(t, conn)
	if err := ch.ExchangeDeclare(ex, "fanout", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "", ex, false, nil); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, s, sinktest.NewRecord("orders", "k", []byte("ok")))
	if d := get(t, ch, q.Name); string(d.Body) != "ok" {
		t.Errorf("got %q", d.Body)
	}
}

// waitPublished publishes r until it succeeds, failing the test after 30s.
func waitPublished(t testing.TB, s *amqpsink.Sink, r *outbox.Record) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := publish(t, s, r)[0]
		if err == nil {
			return
		}
		if sink.IsPermanent(err) {
			t.Fatalf("permanent error: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after 30s: %v", err)
		}
		<-time.After(20 * time.Millisecond) // like a relay's backoff
	}
}

// TestDeclareExchange: New declares the exchange (durable by default) and is idempotent;
// a declaration the broker refuses (another kind) fails New, naming the exchange.
func TestDeclareExchange(t *testing.T) {
	t.Parallel()
	ex := uniqueName("declared")
	conn := dial(t)
	ch := channel(t, conn)
	t.Cleanup(func() {
		c := dial(t)
		_ = channel(t, c).ExchangeDelete(ex, false, false)
	})
	for i := 0; i < 2; i++ {
		s := newSink(t, amqpsink.Config{Exchange: ex, DeclareExchange: &amqpsink.Exchange{Kind: "fanout"}})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Passive declare with the same properties succeeds only if it exists.
	if err := ch.ExchangeDeclarePassive(ex, "fanout", true, false, false, false, nil); err != nil {
		t.Fatalf("exchange not declared: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := amqpsink.New(ctx, amqpsink.Config{URL: brokerURL(), DeclareExchange: &amqpsink.Exchange{Name: ex, Kind: "direct"}, Logger: logtest.New(t)})
	if err == nil || !strings.Contains(err.Error(), ex) {
		t.Errorf("New redeclaring %s as direct: %v, want an error naming it", ex, err)
	}
}

// TestRefused: bad credentials fail New with ErrAuth, and the password appears nowhere in
// the error.
func TestRefused(t *testing.T) {
	t.Parallel()
	service.Require(t, "RabbitMQ")
	const secret = "s3cr3t-pa55"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u := strings.Replace(brokerURL(), "guest:guest@", "guest:"+secret+"@", 1)
	s, err := amqpsink.New(ctx, amqpsink.Config{URL: u, Logger: logtest.New(t)})
	if err == nil {
		_ = s.Close()
		t.Fatal("New with a wrong password succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error reveals the password: %v", err)
	}
	if !errors.Is(err, amqpsink.ErrAuth) {
		t.Errorf("New: %v, want ErrAuth", err)
	}
	t.Logf("refused: %v", err)
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 256)
	tests := []struct {
		name  string
		cfg   amqpsink.Config
		field string
	}{
		{"bad scheme", amqpsink.Config{URL: "http://guest:guest@localhost/"}, "url"},
		{"bad url", amqpsink.Config{URL: "amqp://guest:secret@[::1"}, "url"},
		{"bad port", amqpsink.Config{URL: "amqp://guest:secret@localhost:notaport/"}, "url"},
		{"long exchange", amqpsink.Config{Exchange: long}, "exchange"},
		{"control char in exchange", amqpsink.Config{Exchange: "ex\n"}, "exchange"},
		{"long prefix", amqpsink.Config{RoutingKeyPrefix: long}, "routing_key_prefix"},
		{"long mapped key", amqpsink.Config{RoutingKeys: map[string]string{"a": long}}, "routing_keys"},
		{"declare default exchange", amqpsink.Config{DeclareExchange: &amqpsink.Exchange{}}, "declare_exchange.name"},
		{"declare other name", amqpsink.Config{Exchange: "a", DeclareExchange: &amqpsink.Exchange{Name: "b"}}, "declare_exchange.name"},
		{"declare amq.", amqpsink.Config{Exchange: "amq.mine", DeclareExchange: &amqpsink.Exchange{}}, "declare_exchange.name"},
		{"bad kind", amqpsink.Config{Exchange: "a", DeclareExchange: &amqpsink.Exchange{Kind: "round-robin"}}, "declare_exchange.kind"},
		{"long source", amqpsink.Config{Source: long}, "source"},
		{"control char in source", amqpsink.Config{Source: "svc\n"}, "source"},
		{"control char in connection name", amqpsink.Config{ConnectionName: "a\x00"}, "connection_name"},
		{"negative timeout", amqpsink.Config{PublishTimeout: -time.Second}, "publish_timeout"},
		{"negative connect timeout", amqpsink.Config{ConnectTimeout: -1}, "connect_timeout"},
		{"negative heartbeat", amqpsink.Config{Heartbeat: -1}, "heartbeat"},
		{"sub-second heartbeat", amqpsink.Config{Heartbeat: 500 * time.Millisecond}, "heartbeat"},
		{"negative reconnect wait", amqpsink.Config{ReconnectWait: -1}, "reconnect_wait"},
		{"negative max message bytes", amqpsink.Config{MaxMessageBytes: -1}, "max_message_bytes"},
		{"no host", amqpsink.Config{URL: "amqp://guest:secret@/vhost"}, "url"},
		{"empty mapped topic", amqpsink.Config{RoutingKeys: map[string]string{"": "k"}}, "routing_keys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var vce *outbox.ConfigError
			if err := tc.cfg.Validate(); !errors.As(err, &vce) || vce.Field != tc.field {
				t.Errorf("Validate: %v, want a ConfigError for field %q", err, tc.field)
			}
			s, err := amqpsink.New(context.Background(), tc.cfg)
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
	s := newSink(t, amqpsink.Config{})
	for i := 0; i < 2; i++ {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	res := publish(t, s, sinktest.NewRecord("orders", "k", nil))
	if !errors.Is(res[0], amqpsink.ErrClosed) || !sink.IsUnavailable(res[0]) {
		t.Errorf("Publish after Close: %v, want an Unavailable ErrClosed", res[0])
	}
}

// TestPublishTimeout: messages not confirmed within PublishTimeout fail with Unavailable
// errors wrapping context.DeadlineExceeded, Publish returns on time, and the sink keeps
// working. RabbitMQ confirms everything it can route, so the delay comes from a batch far
// longer than the timeout.
func TestPublishTimeout(t *testing.T) {
	t.Parallel()
	tp := newTopology(t, nil)
	const timeout = 50 * time.Millisecond
	s := newSink(t, amqpsink.Config{Exchange: tp.exchange, PublishTimeout: timeout})
	recs := make([]*outbox.Record, 20000)
	payload := make([]byte, 1024)
	for i := range recs {
		recs[i] = sinktest.NewRecord("orders", "k", payload)
	}
	start := time.Now()
	res := publish(t, s, recs...)
	if d := time.Since(start); d > timeout+2*time.Second {
		t.Errorf("Publish returned after %s, want about the publish timeout %s", d, timeout)
	}
	var acked, failed int
	for i, err := range res {
		switch {
		case err == nil:
			acked++
		case !sink.IsUnavailable(err) || !errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("message %d: %v, want an Unavailable timeout", i, err)
		default:
			failed++
		}
	}
	t.Logf("%d acknowledged, %d timed out", acked, failed)
	if failed == 0 {
		t.Skip("the broker confirmed 20000 messages within 50ms; nothing timed out")
	}
	// The sink still works, once the broker confirmed the backlog sent before the timeout.
	waitPublished(t, s, sinktest.NewRecord("orders", "k", nil))
}
