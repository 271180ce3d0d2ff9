package nats_test

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/internal/testutil/service"
	"github.com/outboxgo/outbox/sink"
	natssink "github.com/outboxgo/outbox/sink/nats"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// quiet keeps connection events out of the test output unless a test fails.
func quietConfig(t testing.TB, cfg natssink.Config) natssink.Config {
	if cfg.Logger == nil {
		cfg.Logger = logtest.New(t)
	}
	return cfg
}

func newSink(t testing.TB, cfg natssink.Config) *natssink.Sink {
	t.Helper()
	if cfg.URL == "" || cfg.URL == natstest.URL() {
		service.Require(t, "the NATS JetStream server at "+natstest.URL())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := natssink.New(ctx, quietConfig(t, cfg))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// setup is the common bundle: a connection to the shared server, a private stream and a
// sink publishing into it.
type bundle struct {
	nc     *natsgo.Conn
	js     jetstream.JetStream
	stream string
	prefix string
	sink   *natssink.Sink
}

func setup(t *testing.T, opts ...natstest.StreamOption) *bundle {
	t.Helper()
	nc := natstest.Connect(t)
	stream, prefix := natstest.Stream(t, nc, opts...)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s := newSink(t, natssink.Config{URL: natstest.URL(), SubjectPrefix: prefix, Source: "svc-test"})
	return &bundle{nc: nc, js: js, stream: stream, prefix: prefix, sink: s}
}

// lastMsg reads the last message of a topic straight from the stream.
func (b *bundle) lastMsg(ctx context.Context, topic string) (*jetstream.RawStreamMsg, error) {
	st, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		return nil, err
	}
	return st.GetLastMsgForSubject(ctx, b.prefix+topic)
}

// streamMsgs returns how many messages the bundle's stream holds.
func (b *bundle) streamMsgs(t *testing.T) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func publish(t *testing.T, s sink.Sink, recs ...*outbox.Record) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := s.Publish(ctx, recs)
	if len(res) != len(recs) {
		t.Fatalf("Publish returned %d results for %d messages", len(res), len(recs))
	}
	return res
}

func TestConformance(t *testing.T) {
	t.Parallel()
	sinktest.Run(t, func(t *testing.T) *sinktest.Harness {
		nc, s, receiver := newBindingHarness(t)
		tooLarge := sinktest.NewRecord("orders", "k", make([]byte, nc.MaxPayload()+1))
		// Enqueue refuses such names, but rows written by other programs may have them.
		badHeader := sinktest.NewRecord("orders", "k", []byte("{}"))
		badHeader.Headers = map[string]string{"bad name:": "x"}
		return &sinktest.Harness{
			Sink:     s,
			Topics:   []string{"orders", "users.created"},
			Receiver: receiver,
			Source:   "sinktest",
			Permanent: []*outbox.Record{
				tooLarge,
				sinktest.NewRecord("orders with spaces", "k", []byte("{}")),
				sinktest.NewRecord("orders.*", "k", []byte("{}")),
				sinktest.NewRecord("orders.>", "k", []byte("{}")),
				sinktest.NewRecord("orders..created", "k", []byte("{}")),
				sinktest.NewRecord("orders.", "k", []byte("{}")),
				badHeader,
			},
		}
	})
}

// TestEnvelope checks the exact NATS headers: the CloudEvents binary-mode binding, the
// dedupe id and the user's headers.
func TestEnvelope(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := sinktest.NewRecord("orders.created", "order-42", []byte(`{"total":12}`))
	r.Type = "com.example.order.created"
	r.Headers = map[string]string{"Content-Type": "application/json", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "X-Tenant": "acme"}
	if err := publish(t, b.sink, r)[0]; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := b.lastMsg(ctx, "orders.created")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"Nats-Msg-Id":        r.ID.String(),
		"ce-id":              r.ID.String(),
		"ce-source":          "svc-test",
		"ce-specversion":     "1.0",
		"ce-type":            "com.example.order.created",
		"ce-subject":         "order-42",
		"ce-time":            r.CreatedAt.UTC().Format(time.RFC3339Nano),
		"ce-datacontenttype": "application/json",
		"ce-outboxseq":       strconv.FormatInt(r.Seq, 10),
		"traceparent":        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"X-Tenant":           "acme",
	}
	for name, v := range want {
		if got := m.Header.Values(name); len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want [%q]", name, got, v)
		}
	}
	for name := range m.Header {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected header %s: %q", name, m.Header.Values(name))
		}
	}
	if !bytes.Equal(m.Data, r.Payload) {
		t.Errorf("payload %q, want %q", m.Data, r.Payload)
	}
}

// TestEnvelopeNoKey: without a key there is no ce-subject; without Type, type is the topic.
func TestEnvelopeNoKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := sinktest.NewRecord("audit", "", []byte("raw"))
	if err := publish(t, b.sink, r)[0]; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := b.lastMsg(ctx, "audit")
	if err != nil {
		t.Fatal(err)
	}
	if v := m.Header.Values("ce-subject"); v != nil {
		t.Errorf("ce-subject = %q, want none", v)
	}
	if v := m.Header.Get("ce-type"); v != "audit" {
		t.Errorf("ce-type = %q, want the topic", v)
	}
	for _, name := range []string{"content-type", "ce-datacontenttype"} {
		if v := m.Header.Values(name); v != nil {
			t.Errorf("%s = %q, want none", name, v)
		}
	}
}

// TestDuplicateIsSuccess: JetStream drops a message whose Nats-Msg-Id it has seen within the
// stream's duplicate window and acks it as a duplicate; the sink reports success, and the
// stream holds one copy.
func TestDuplicateIsSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := sinktest.NewRecord("orders", "k", []byte("{}"))
	for i := 0; i < 3; i++ {
		res := publish(t, b.sink, r, r)
		if i == 0 && res[0] != nil {
			t.Fatalf("round %d: first publish: %v", i, res[0])
		}
		if i > 0 && !sink.IsDuplicate(res[0]) {
			t.Fatalf("round %d: republish: %v, want a duplicate result", i, res[0])
		}
		if !sink.IsDuplicate(res[1]) {
			t.Fatalf("round %d: second of the batch: %v, want a duplicate result", i, res[1])
		}
	}
	if n := b.streamMsgs(t); n != 1 {
		t.Errorf("stream holds %d messages, want 1", n)
	}
}

// TestNoStream: a subject no stream captures fails with an Unavailable error (no attempt is
// spent while an operator creates the stream), and says why.
func TestNoStream(t *testing.T) {
	t.Parallel()
	s := newSink(t, natssink.Config{SubjectPrefix: "outbox-test-nostream." + outbox.NewID().String() + "."})
	start := time.Now()
	res := publish(t, s, sinktest.NewRecord("orders", "k", []byte("{}")), sinktest.NewRecord("orders", "k", []byte("{}")))
	for i, err := range res {
		if !sink.IsUnavailable(err) {
			t.Fatalf("message %d: %v, want an Unavailable error", i, err)
		}
		if !strings.Contains(err.Error(), "no JetStream stream captures this subject") {
			t.Errorf("message %d: error %q does not explain the missing stream", i, err)
		}
		if !errors.Is(err, jetstream.ErrNoStreamResponse) {
			t.Errorf("message %d: error %q does not wrap jetstream.ErrNoStreamResponse", i, err)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s to report the missing stream", d)
	}
}

// TestStreamRejects: a message within the server's max_payload but over the stream's
// max_msg_size is refused by JetStream (a 4xx API error): permanent.
func TestStreamRejects(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *jetstream.StreamConfig) { c.MaxMsgSize = 1024 })
	res := publish(t, b.sink,
		sinktest.NewRecord("orders", "k", []byte("{}")),
		sinktest.NewRecord("orders", "k", make([]byte, 4096)),
		sinktest.NewRecord("orders", "k", []byte("{}")))
	if res[0] != nil || res[2] != nil {
		t.Errorf("small messages: %v, %v", res[0], res[2])
	}
	if !sink.IsPermanent(res[1]) {
		t.Errorf("oversized for the stream: %v, want permanent", res[1])
	}
	var apiErr *jetstream.APIError
	if !errors.As(res[1], &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamMessageExceedsMaximum {
		t.Errorf("error %v does not carry the JetStream API error", res[1])
	}
}

// TestCreateStream: Config.Stream creates the stream at New, and New is idempotent with an
// existing one.
func TestCreateStream(t *testing.T) {
	t.Parallel()
	nc := natstest.Connect(t)
	name := "T_create_" + strings.ReplaceAll(outbox.NewID().String(), "-", "")
	prefix := "tc." + name + "."
	cfg := &jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ">"}, Storage: jetstream.MemoryStorage}
	t.Cleanup(func() {
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, name)
	})
	for i := 0; i < 2; i++ {
		s := newSink(t, natssink.Config{SubjectPrefix: prefix, Stream: cfg})
		if err := publish(t, s, sinktest.NewRecord("orders", "k", []byte("{}")))[0]; err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		_ = s.Close()
	}
	// A configuration the server refuses fails New, naming the stream.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bad := &jetstream.StreamConfig{Name: name + "_bad", Subjects: []string{prefix + ">"}} // overlaps
	_, err := natssink.New(ctx, quietConfig(t, natssink.Config{Stream: bad}))
	if err == nil || !strings.Contains(err.Error(), name+"_bad") {
		t.Errorf("New with an overlapping stream: %v, want an error naming the stream", err)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	nc := natstest.Connect(t)
	tests := []struct {
		name  string
		cfg   natssink.Config
		field string
	}{
		{"url and conn", natssink.Config{URL: natstest.URL(), Conn: nc}, "url"},
		{"bad url", natssink.Config{URL: "nats://[::1"}, "url"},
		{"negative timeout", natssink.Config{PublishTimeout: -time.Second}, "publish_timeout"},
		{"negative max pending", natssink.Config{MaxPending: -1}, "max_pending"},
		{"negative reconnect wait", natssink.Config{ReconnectWait: -1}, "reconnect_wait"},
		{"prefix with space", natssink.Config{SubjectPrefix: "a b."}, "subject_prefix"},
		{"prefix with wildcard", natssink.Config{SubjectPrefix: "a.*."}, "subject_prefix"},
		{"prefix with empty token", natssink.Config{SubjectPrefix: ".a."}, "subject_prefix"},
		{"control char in source", natssink.Config{Source: "svc\n"}, "source"},
		{"stream without name", natssink.Config{Stream: &jetstream.StreamConfig{}}, "stream.name"},
		{"url scheme", natssink.Config{URL: "http://u:hunter2@h:4222"}, "url"},
		{"url without host", natssink.Config{URL: "nats://:4222"}, "url"},
		{"empty url in list", natssink.Config{URL: "nats://a:4222,,nats://b:4222"}, "url"},
		{"bad second url", natssink.Config{URL: "nats://a:4222, ftp://b"}, "url"},
		{"control char in name", natssink.Config{Name: "relay\n"}, "name"},
		{"stream name with dot", natssink.Config{Stream: &jetstream.StreamConfig{Name: "a.b"}}, "stream.name"},
		{"stream name with space", natssink.Config{Stream: &jetstream.StreamConfig{Name: "a b"}}, "stream.name"},
		{"stream subject > not last", natssink.Config{Stream: &jetstream.StreamConfig{Name: "S", Subjects: []string{"a.>.b"}}}, "stream.subjects"},
		{"stream subject empty token", natssink.Config{Stream: &jetstream.StreamConfig{Name: "S", Subjects: []string{"a..b"}}}, "stream.subjects"},
		{"stream subject space", natssink.Config{Stream: &jetstream.StreamConfig{Name: "S", Subjects: []string{"a b"}}}, "stream.subjects"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var vce *outbox.ConfigError
			if err := tc.cfg.Validate(); !errors.As(err, &vce) || vce.Field != tc.field {
				t.Errorf("Validate: %v, want a ConfigError for field %q", err, tc.field)
			}
			s, err := natssink.New(context.Background(), quietConfig(t, tc.cfg))
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

// TestConfigValidateAccepts: Validate accepts the zero Config, server lists, addresses
// without a scheme and stream subjects with wildcards, and quotes no server URL.
func TestConfigValidateAccepts(t *testing.T) {
	t.Parallel()
	for _, cfg := range []natssink.Config{
		{},
		{URL: "nats://a:4222, tls://u:pw@b:4222,c:4222", Name: "relay-1", Source: "svc"},
		{URL: "ws://h:8080,wss://h:8443"},
		{SubjectPrefix: "app.", Stream: &jetstream.StreamConfig{Name: "APP_EVENTS", Subjects: []string{"app.>", "audit.*.x"}}},
		{Stream: &jetstream.StreamConfig{Name: "S"}},
	} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", cfg, err)
		}
	}
	err := natssink.Config{URL: "nats://a:4222,http://user:hunter2@b:4222/x"}.Validate()
	if err == nil || !strings.Contains(err.Error(), "server 2") || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "user") {
		t.Errorf("Validate: %v, want an error naming server 2 without quoting it", err)
	}
}

// TestBorrowedConn: a sink on the caller's connection leaves it open on Close.
func TestBorrowedConn(t *testing.T) {
	t.Parallel()
	nc := natstest.Connect(t)
	stream, prefix := natstest.Stream(t, nc)
	s := newSink(t, natssink.Config{Conn: nc, SubjectPrefix: prefix})
	if s.Conn() != nc {
		t.Error("Conn() is not the given connection")
	}
	if err := publish(t, s, sinktest.NewRecord("orders", "k", []byte("{}")))[0]; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !nc.IsConnected() {
		t.Fatal("Close closed the caller's connection")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	if _, err := js.Publish(ctx, prefix+"after", nil); err != nil {
		t.Errorf("connection unusable after Close: %v", err)
	}
	_ = stream
}

// TestClose: Close is idempotent, and Publish afterwards fails retryably with ErrClosed.
func TestClose(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i := 0; i < 2; i++ {
		if err := b.sink.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if b.sink.Conn().Status() != natsgo.CLOSED {
		t.Errorf("own connection is %s after Close, want CLOSED", b.sink.Conn().Status())
	}
	res := publish(t, b.sink, sinktest.NewRecord("orders", "k", nil))
	if !errors.Is(res[0], natssink.ErrClosed) || sink.IsPermanent(res[0]) {
		t.Errorf("Publish after Close: %v, want retryable ErrClosed", res[0])
	}
}

// TestSmallMaxPending: a batch far larger than MaxPending flows through the in-flight limit.
func TestSmallMaxPending(t *testing.T) {
	t.Parallel()
	nc := natstest.Connect(t)
	stream, prefix := natstest.Stream(t, nc)
	s := newSink(t, natssink.Config{SubjectPrefix: prefix, MaxPending: 3})
	recs := make([]*outbox.Record, 500)
	for i := range recs {
		recs[i] = sinktest.NewRecord("orders", "k", []byte("{}"))
	}
	for i, err := range publish(t, s, recs...) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	_ = stream
}

// TestNoAck: when nothing acknowledges (a plain subscriber listens on the subject, no stream
// does), Publish gives up after PublishTimeout with retryable errors and frees its in-flight
// slots for the next batch.
func TestNoAck(t *testing.T) {
	t.Parallel()
	nc := natstest.Connect(t)
	_, prefix := natstest.Stream(t, nc)
	hole := "outbox-test-blackhole." + strings.ReplaceAll(outbox.NewID().String(), "-", "")
	sub, err := nc.SubscribeSync(hole)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const timeout = 300 * time.Millisecond
	s := newSink(t, natssink.Config{PublishTimeout: timeout, MaxPending: 4})
	recs := []*outbox.Record{
		sinktest.NewRecord(hole, "k", []byte("{}")),
		sinktest.NewRecord(hole, "k", []byte("{}")),
		sinktest.NewRecord(hole, "k", []byte("{}")),
		sinktest.NewRecord(hole, "k", []byte("{}")),
	}
	start := time.Now()
	res := publish(t, s, recs...)
	if d := time.Since(start); d < timeout || d > timeout+2*time.Second {
		t.Errorf("Publish returned after %s, want about the publish timeout %s", d, timeout)
	}
	for i, err := range res {
		if !sink.IsUnavailable(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("message %d: %v, want an Unavailable timeout", i, err)
		}
	}
	// All four in-flight slots were released: a normal batch goes through.
	ok := sinktest.NewRecord(prefix+"orders", "k", []byte("{}"))
	if err := publish(t, s, ok)[0]; err != nil {
		t.Fatalf("after the timeout: %v", err)
	}
}
