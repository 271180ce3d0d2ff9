package redis_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/service"
	"github.com/outboxgo/outbox/sink"
	redissink "github.com/outboxgo/outbox/sink/redis"
	"github.com/outboxgo/outbox/sink/sinktest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	sinktest.Run(t, func(t *testing.T) *sinktest.Harness {
		c := connect(t)
		prefix := newPrefix(t, c)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Keys holding other types: XADD fails with WRONGTYPE.
		if err := c.Set(ctx, prefix+"a-string", "x", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.HSet(ctx, prefix+"a-hash", "f", "v").Err(); err != nil {
			t.Fatal(err)
		}
		s := newSink(t, redissink.Config{Addr: redisAddr(), StreamPrefix: prefix, Source: "sinktest"})
		return &sinktest.Harness{
			Sink:     s,
			Topics:   []string{"orders", "users.created"},
			Receiver: newReceiver(c, prefix, "orders", "users.created"),
			Source:   "sinktest",
			Permanent: []*outbox.Record{
				sinktest.NewRecord("a-string", "k", []byte("{}")),
				sinktest.NewRecord("a-hash", "k", []byte("{}")),
			},
		}
	})
}

// TestEnvelope checks the exact fields of a stream entry.
func TestEnvelope(t *testing.T) {
	t.Parallel()
	c := connect(t)
	prefix := newPrefix(t, c)
	s := newSink(t, redissink.Config{StreamPrefix: prefix, Source: "svc-test"})
	r := sinktest.NewRecord("orders.created", "order-42", []byte("{\"total\":12}\x00\xff"))
	r.Type = "com.example.order.created"
	r.Headers = map[string]string{"Content-Type": "application/json", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "X-Tenant": "acme"}
	if err := publish(t, s, r)[0]; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	entries, err := c.XRange(ctx, prefix+"orders.created", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("stream holds %d entries, want 1", len(entries))
	}
	want := map[string]string{
		"id":              r.ID.String(),
		"source":          "svc-test",
		"specversion":     "1.0",
		"type":            "com.example.order.created",
		"subject":         "order-42",
		"time":            r.CreatedAt.UTC().Format(time.RFC3339Nano),
		"datacontenttype": "application/json",
		"outboxseq":       strconv.FormatInt(r.Seq, 10),
		"h:traceparent":   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"h:X-Tenant":      "acme",
		"data":            string(r.Payload),
	}
	got := entries[0].Values
	for name, v := range want {
		if got[name] != v {
			t.Errorf("field %s = %q, want %q", name, got[name], v)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected field %s = %q", name, got[name])
		}
	}
}

// TestEnvelopeNoKey: without a key there is no subject; without Type, type is the topic; no
// content-type header, no datacontenttype.
func TestEnvelopeNoKey(t *testing.T) {
	t.Parallel()
	c := connect(t)
	prefix := newPrefix(t, c)
	s := newSink(t, redissink.Config{StreamPrefix: prefix})
	if err := publish(t, s, sinktest.NewRecord("audit", "", []byte("raw")))[0]; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	entries, err := c.XRange(ctx, prefix+"audit", "-", "+").Result()
	if err != nil || len(entries) != 1 {
		t.Fatalf("XRANGE: %d entries, %v", len(entries), err)
	}
	v := entries[0].Values
	if _, ok := v["subject"]; ok {
		t.Errorf("subject = %q, want none", v["subject"])
	}
	if _, ok := v["datacontenttype"]; ok {
		t.Errorf("datacontenttype = %q, want none", v["datacontenttype"])
	}
	if v["type"] != "audit" || v["source"] != redissink.DefaultSource {
		t.Errorf("type %q source %q, want the topic and the default source", v["type"], v["source"])
	}
}

// TestStreamsMapping: Config.Streams names a topic's stream exactly; other topics use the
// prefix.
func TestStreamsMapping(t *testing.T) {
	t.Parallel()
	c := connect(t)
	prefix := newPrefix(t, c)
	s := newSink(t, redissink.Config{StreamPrefix: prefix + "p:", Streams: map[string]string{"orders": prefix + "exact-orders"}})
	res := publish(t, s, sinktest.NewRecord("orders", "k", []byte("1")), sinktest.NewRecord("users", "k", []byte("2")))
	for i, err := range res {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for key, want := range map[string]int64{prefix + "exact-orders": 1, prefix + "p:users": 1, prefix + "p:orders": 0} {
		if n, err := c.XLen(ctx, key).Result(); err != nil || n != want {
			t.Errorf("XLEN %s = %d (%v), want %d", key, n, err, want)
		}
	}
}

// TestWrongType: a key holding a string fails its messages permanently, naming the stream,
// and does not affect the other messages of the batch.
func TestWrongType(t *testing.T) {
	t.Parallel()
	c := connect(t)
	prefix := newPrefix(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Set(ctx, prefix+"taken", "not a stream", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, redissink.Config{StreamPrefix: prefix})
	res := publish(t, s,
		sinktest.NewRecord("orders", "a", []byte("1")),
		sinktest.NewRecord("taken", "b", []byte("2")),
		sinktest.NewRecord("orders", "c", []byte("3")))
	if res[0] != nil || res[2] != nil {
		t.Errorf("good messages: %v, %v", res[0], res[2])
	}
	if !sink.IsPermanent(res[1]) || !goredis.HasErrorPrefix(res[1], "WRONGTYPE") || !strings.Contains(res[1].Error(), prefix+"taken") {
		t.Errorf("message to a string key: %v, want a permanent WRONGTYPE error naming the key", res[1])
	}
	if v, err := c.Get(ctx, prefix+"taken").Result(); err != nil || v != "not a stream" {
		t.Errorf("the string key was changed: %q, %v", v, err)
	}
}

// TestMaxLen: MAXLEN = keeps exactly the newest MaxLen entries; MAXLEN ~ trims too, in
// whole nodes.
func TestMaxLen(t *testing.T) {
	t.Parallel()
	c := connect(t)
	prefix := newPrefix(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	exact := newSink(t, redissink.Config{StreamPrefix: prefix, MaxLen: 10})
	var recs []*outbox.Record
	for i := 0; i < 50; i++ {
		recs = append(recs, sinktest.NewRecord("exact", fmt.Sprint("k", i), []byte(fmt.Sprint(i))))
	}
	for i, err := range publish(t, exact, recs...) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	entries, err := c.XRange(ctx, prefix+"exact", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 10 {
		t.Fatalf("exact trimming: stream holds %d entries, want 10", len(entries))
	}
	for i, e := range entries {
		if want := recs[40+i].ID.String(); e.Values["id"] != want {
			t.Errorf("entry %d is %v, want message %d (%s)", i, e.Values["id"], 40+i, want)
		}
	}

	approx := newSink(t, redissink.Config{StreamPrefix: prefix, MaxLen: 10, Approximate: true})
	recs = recs[:0]
	for i := 0; i < 1000; i++ {
		recs = append(recs, sinktest.NewRecord("approx", fmt.Sprint("k", i), []byte(fmt.Sprint(i))))
	}
	for i, err := range publish(t, approx, recs...) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	n, err := c.XLen(ctx, prefix+"approx").Result()
	if err != nil {
		t.Fatal(err)
	}
	// Redis trims whole nodes (stream-node-max-entries, 100 by default).
	if n < 10 || n >= 1000 {
		t.Errorf("approximate trimming: stream holds %d entries, want at least 10 and fewer than 1000", n)
	}
	t.Logf("MAXLEN ~ 10 after 1000 entries: %d entries", n)
}

// failHook makes the server "reject" chosen XADDs: the commands whose id field is in fail
// are not sent and get err, as if Redis had answered with it.
type failHook struct {
	mu   sync.Mutex
	fail map[string]error
}

func (h *failHook) DialHook(next goredis.DialHook) goredis.DialHook          { return next }
func (h *failHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook { return next }
func (h *failHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		pass := cmds[:0:0]
		for _, cmd := range cmds {
			h.mu.Lock()
			err := h.fail[xaddID(cmd)]
			h.mu.Unlock()
			if err != nil {
				cmd.SetErr(err)
				continue
			}
			pass = append(pass, cmd)
		}
		if len(pass) == 0 {
			return nil
		}
		return next(ctx, pass)
	}
}

// redisError is an error reply, as go-redis reports it.
type redisError string

func (e redisError) Error() string { return string(e) }
func (redisError) RedisError()     {}

// xaddID returns the id field of an XADD command.
func xaddID(cmd goredis.Cmder) string {
	args := cmd.Args()
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "id" {
			return fmt.Sprint(args[i+1])
		}
	}
	return ""
}

// TestOrderWithinBatch: when a batch holds several messages of a key (the relay sends at
// most one, but the sink keeps the guarantee) and one fails retryably, the later messages
// of that key are not sent, while other keys and permanent failures do not hold anything
// back.
func TestOrderWithinBatch(t *testing.T) {
	t.Parallel()
	c := connect(t)
	prefix := newPrefix(t, c)
	client := goredis.NewClient(&goredis.Options{Addr: redisAddr()})
	t.Cleanup(func() { _ = client.Close() })
	hook := &failHook{fail: map[string]error{}}
	client.AddHook(hook)
	s := newSink(t, redissink.Config{Client: client, StreamPrefix: prefix})

	a1 := sinktest.NewRecord("orders", "a", []byte("a1"))
	a2 := sinktest.NewRecord("orders", "a", []byte("a2"))
	a3 := sinktest.NewRecord("orders", "a", []byte("a3"))
	b1 := sinktest.NewRecord("orders", "b", []byte("b1"))
	b2 := sinktest.NewRecord("orders", "b", []byte("b2"))
	b3 := sinktest.NewRecord("orders", "b", []byte("b3"))
	u := sinktest.NewRecord("orders", "", []byte("u"))
	hook.fail[a1.ID.String()] = errors.New("OOM command not allowed when used memory > 'maxmemory'.")
	hook.fail[b1.ID.String()] = redisError("WRONGTYPE Operation against a key holding the wrong kind of value")

	res := publish(t, s, a1, b1, u, a2, b2, a3, b3)
	// a1: OOM, retryable.
	if res[0] == nil || sink.IsPermanent(res[0]) || !strings.Contains(res[0].Error(), "out of memory") {
		t.Errorf("a1: %v, want a retryable out-of-memory error", res[0])
	}
	// b1: permanent; b2 and b3 still go.
	if !sink.IsPermanent(res[1]) {
		t.Errorf("b1: %v, want permanent", res[1])
	}
	for _, i := range []int{2, 4, 6} {
		if res[i] != nil {
			t.Errorf("message %d: %v", i, res[i])
		}
	}
	// a2, a3: held back, retryable.
	for _, i := range []int{3, 5} {
		if res[i] == nil || sink.IsPermanent(res[i]) || !strings.Contains(res[i].Error(), "earlier message") {
			t.Errorf("message %d: %v, want a retryable not-sent error", i, res[i])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	entries, err := c.XRange(ctx, prefix+"orders", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, fmt.Sprint(e.Values["data"]))
	}
	if strings.Join(got, ",") != "u,b2,b3" {
		t.Errorf("stream holds %v, want [u b2 b3]", got)
	}
}

// blackHole is a TCP server that accepts connections and never answers.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String()
}

// TestUnresponsiveServer: a server that never answers holds Publish up to the publish
// timeout or the caller's cancellation, whichever is first, with Unavailable errors; Close
// then returns.
func TestUnresponsiveServer(t *testing.T) {
	t.Parallel()
	addr := blackHole(t)
	const timeout = 300 * time.Millisecond
	s := newSink(t, redissink.Config{Addr: addr, PublishTimeout: timeout})
	recs := []*outbox.Record{sinktest.NewRecord("orders", "a", nil), sinktest.NewRecord("orders", "b", nil)}

	start := time.Now()
	res := publish(t, s, recs...)
	if d := time.Since(start); d < timeout || d > timeout+time.Second {
		t.Errorf("Publish returned after %s, want about the publish timeout %s", d, timeout)
	}
	for i, err := range res {
		if !sink.IsUnavailable(err) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("message %d: %v, want an Unavailable deadline error", i, err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start = time.Now()
	res = s.Publish(ctx, recs)
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Errorf("Publish returned %s after its context was canceled at 50ms", d)
	}
	for i, err := range res {
		if !sink.IsUnavailable(err) || !errors.Is(err, context.Canceled) {
			t.Errorf("message %d: %v, want an Unavailable cancellation error", i, err)
		}
	}
	start = time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > timeout+time.Second {
		t.Errorf("Close took %s", d)
	}
}

// TestClose: Close is idempotent, leaves a borrowed client open, and Publish afterwards
// fails with an Unavailable ErrClosed.
func TestClose(t *testing.T) {
	t.Parallel()
	c := connect(t)
	prefix := newPrefix(t, c)
	s := newSink(t, redissink.Config{Client: c, StreamPrefix: prefix})
	if s.Client() != goredis.UniversalClient(c) {
		t.Error("Client() is not the given client")
	}
	if err := publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	res := publish(t, s, sinktest.NewRecord("orders", "k", nil))
	if !errors.Is(res[0], redissink.ErrClosed) || !sink.IsUnavailable(res[0]) {
		t.Errorf("Publish after Close: %v, want Unavailable ErrClosed", res[0])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Errorf("Close closed the caller's client: %v", err)
	}

	own := newSink(t, redissink.Config{StreamPrefix: prefix})
	if err := own.Close(); err != nil {
		t.Fatal(err)
	}
	if err := own.Client().Ping(ctx).Err(); !errors.Is(err, goredis.ErrClosed) {
		t.Errorf("own client after Close: %v, want ErrClosed", err)
	}
}

// TestAuthErrorHidesPassword: a wrong password makes New fail with ErrAuth (the command exits
// 1 with it), and the password appears neither in the error nor in the log.
func TestAuthErrorHidesPassword(t *testing.T) {
	t.Parallel()
	service.Require(t, "Redis")
	const password = "s3cret-pa55word-that-must-not-leak"
	log := &logtest.Buffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := redissink.New(ctx, redissink.Config{Password: password, Username: "outbox-test-nobody", Logger: log.Logger()})
	if err == nil {
		_ = s.Close()
		t.Fatal("New succeeded with a wrong password")
	}
	if !errors.Is(err, redissink.ErrAuth) {
		t.Errorf("New: %v, want ErrAuth", err)
	}
	t.Logf("error: %v", err)
	if strings.Contains(err.Error(), password) || strings.Contains(log.String(), password) {
		t.Errorf("the password leaked: error %q, log %q", err, log.String())
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	c := connect(t)
	tests := []struct {
		name  string
		cfg   redissink.Config
		field string
	}{
		{"client and addr", redissink.Config{Client: c, Addr: "127.0.0.1:6379"}, "addr"},
		{"client and password", redissink.Config{Client: c, Password: "x"}, "password"},
		{"client and db", redissink.Config{Client: c, DB: 2}, "db"},
		{"client and tls", redissink.Config{Client: c, TLS: true}, "tls"},
		{"client and tls config", redissink.Config{Client: c, TLSConfig: &tls.Config{}}, "tls_config"},
		{"addr without port", redissink.Config{Addr: "localhost"}, "addr"},
		{"negative db", redissink.Config{DB: -1}, "db"},
		{"negative max len", redissink.Config{MaxLen: -1}, "max_len"},
		{"approximate without max len", redissink.Config{Approximate: true}, "approximate"},
		{"negative timeout", redissink.Config{PublishTimeout: -time.Second}, "publish_timeout"},
		{"control char in source", redissink.Config{Source: "svc\n"}, "source"},
		{"empty stream key", redissink.Config{Streams: map[string]string{"orders": ""}}, "streams"},
		{"empty topic", redissink.Config{Streams: map[string]string{"": "x"}}, "streams"},
		{"control char in stream prefix", redissink.Config{StreamPrefix: "app\n"}, "stream_prefix"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var vce *outbox.ConfigError
			if err := tc.cfg.Validate(); !errors.As(err, &vce) || vce.Field != tc.field {
				t.Errorf("Validate: %v, want a ConfigError for field %q", err, tc.field)
			}
			s, err := redissink.New(context.Background(), tc.cfg)
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
