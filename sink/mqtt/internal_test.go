package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/sink"
)

func record(topic string, payload []byte) *outbox.Record {
	return &outbox.Record{
		Message:   outbox.Message{ID: outbox.NewID(), Topic: topic, Key: "k", Payload: payload},
		CreatedAt: time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC),
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newTestSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	cfg.Logger = cmpLogger(cfg.Logger)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func cmpLogger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return quiet()
	}
	return l
}

func publishAll(t *testing.T, s *Sink, recs ...*outbox.Record) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res := s.Publish(ctx, recs)
	if len(res) != len(recs) {
		t.Fatalf("%d results for %d messages", len(res), len(recs))
	}
	return res
}

// TestAppendPublish round-trips the hand-written PUBLISH encoding through paho's decoder.
func TestAppendPublish(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 70000} {
		payload := bytes.Repeat([]byte{0xab}, n)
		props := []userProperty{{"id", "0195"}, {"type", "t"}, {"x-empty", ""}, {"café", "crème"}}
		buf := appendPublish(nil, "a/b/c", 4242, "application/json", props, len(payload))
		buf = append(buf, payload...)
		if got := packetSize("a/b/c", "application/json", props, len(payload)); got != len(buf) {
			t.Errorf("payload %d: packetSize = %d, encoded %d bytes", n, got, len(buf))
		}
		p, err := packets.ReadPacket(bytes.NewReader(buf))
		if err != nil {
			t.Fatalf("payload %d: decoding: %v", n, err)
		}
		pub := p.Content.(*packets.Publish)
		if pub.Topic != "a/b/c" || pub.PacketID != 4242 || pub.QoS != 1 || pub.Retain || pub.Duplicate {
			t.Errorf("payload %d: header %+v", n, pub)
		}
		if pub.Properties.ContentType != "application/json" || len(pub.Properties.User) != len(props) {
			t.Errorf("payload %d: properties %+v", n, pub.Properties)
		}
		for i, up := range pub.Properties.User {
			if up.Key != props[i].key || up.Value != props[i].value {
				t.Errorf("payload %d: user property %d = %q:%q", n, i, up.Key, up.Value)
			}
		}
		if !bytes.Equal(pub.Payload, payload) {
			t.Errorf("payload %d: payload differs", n)
		}
	}
	// Without content type and properties.
	buf := appendPublish(nil, "t", 1, "", nil, 0)
	if p, err := packets.ReadPacket(bytes.NewReader(buf)); err != nil || p.Content.(*packets.Publish).Topic != "t" {
		t.Errorf("minimal packet: %v", err)
	}
}

func TestReadHeader(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 2, 127, 128, 16383, 16384, 2097151, 2097152, maxRemaining} {
		b := appendVBI([]byte{0x40}, n)
		typ, got, err := readHeader(bufio.NewReader(bytes.NewReader(b)))
		if err != nil || typ != 0x40 || got != n {
			t.Errorf("readHeader(%d) = %#x, %d, %v", n, typ, got, err)
		}
		if vbiLen(n) != len(b)-1 {
			t.Errorf("vbiLen(%d) = %d, encoded in %d", n, vbiLen(n), len(b)-1)
		}
	}
	if _, _, err := readHeader(bufio.NewReader(bytes.NewReader([]byte{0x40, 0xff, 0xff, 0xff, 0xff, 0x01}))); err == nil {
		t.Error("five-byte remaining length accepted")
	}
}

func TestCheckTopic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		topic string
		ok    bool
	}{
		{"orders/created", true},
		{"a//b", true}, // empty levels are valid
		{"/leading", true},
		{"café/commande", true},
		{"emoji/😀", true},
		{"", false},
		{"a/+/b", false},
		{"a/#", false},
		{"a+b", false},
		{"$SYS/x", false},
		{"a\x00b", false},
		{"a\tb", false},
		{"a\u0085b", false},
		{"a\ufffeb", false},
		{"a\U0001FFFFb", false},
		{"a\ufdd0b", false},
		{"a\xffb", false},
		{"\xed\xa0\x80", false}, // a surrogate
		{strings.Repeat("a", maxString), true},
		{strings.Repeat("a", maxString+1), false},
	}
	for _, tc := range tests {
		if reason := checkTopic(tc.topic); (reason == "") != tc.ok {
			t.Errorf("checkTopic(%.40q) = %q, want ok=%v", tc.topic, reason, tc.ok)
		}
	}
}

func TestTopicCache(t *testing.T) {
	t.Parallel()
	c := topicCache{prefix: "app/", sep: "/"}
	for i := 0; i < 2; i++ {
		if got, err := c.get("orders.created"); got != "app/orders/created" || err != nil {
			t.Errorf("get = %q, %v", got, err)
		}
		if _, err := c.get("orders.+"); !sink.IsPermanent(err) {
			t.Errorf("wildcard topic: %v, want permanent", err)
		}
	}
	keep := topicCache{prefix: "p.", sep: "."}
	if got, _ := keep.get("a.b"); got != "p.a.b" {
		t.Errorf("separator . : %q", got)
	}
}

// TestPubackErr holds every PUBACK failure code to its class as Publish reports it
// (pubackErr, then markUnavailable).
func TestPubackErr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code                   byte
		permanent, unavailable bool
	}{
		{0x80, false, false}, {0x83, false, false}, {0x91, false, false}, {0x93, false, false},
		{0x87, false, true}, {0x89, false, true}, {0x8B, false, true}, {0x96, false, true},
		{0x97, false, true}, {0x9C, false, true}, {0x9D, false, true},
		{0x90, true, false}, {0x95, true, false}, {0x99, true, false},
	}
	for _, tc := range tests {
		res := []error{pubackErr(tc.code, "why", "t")}
		markUnavailable(res)
		err := res[0]
		var rc *ReasonCodeError
		if sink.IsPermanent(err) != tc.permanent || sink.IsUnavailable(err) != tc.unavailable ||
			!errors.As(err, &rc) || rc.Code != tc.code || !strings.Contains(err.Error(), "why") {
			t.Errorf("pubackErr(0x%02X) = %v, want permanent=%v unavailable=%v carrying the code and reason", tc.code, err, tc.permanent, tc.unavailable)
		}
	}
	// Failures that are not a PUBACK are the sink's.
	for _, err := range []error{notConnected(nil), notSent(ErrClosed), notSent(context.DeadlineExceeded),
		fmt.Errorf("mqtt sink: %w: %v", ErrConnectionLost, disconnectErr(nil))} {
		res := []error{err}
		markUnavailable(res)
		if !sink.IsUnavailable(res[0]) {
			t.Errorf("%v: not Unavailable", err)
		}
	}
}

func TestParseBroker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url  string
		addr string
		tls  bool
	}{
		{"tcp://localhost", "localhost:1883", false},
		{"mqtt://10.0.0.1:1884", "10.0.0.1:1884", false},
		{"ssl://broker", "broker:8883", true},
		{"mqtts://broker:9999/", "broker:9999", true},
		{"tls://[::1]", "[::1]:8883", true},
	}
	for _, tc := range tests {
		addr, useTLS, err := parseBroker(tc.url)
		if err != nil || addr != tc.addr || useTLS != tc.tls {
			t.Errorf("parseBroker(%q) = %q, %v, %v", tc.url, addr, useTLS, err)
		}
	}
}

// TestPubackCodes: every PUBACK reason code reaches its message; success codes below 0x80,
// "no matching subscribers" included, are success.
func TestPubackCodes(t *testing.T) {
	t.Parallel()
	b := startFakeBroker(t)
	b.configure(func(fb *fakeBroker) {
		fb.onPublish = func(p *packets.Publish) (byte, string, byte, bool) {
			var code byte
			_, _ = fmt.Sscanf(string(p.Payload), "%x", &code)
			return code, "broker says " + string(p.Payload), 0, false
		}
	})
	s := newTestSink(t, Config{Broker: b.url()})
	codes := []byte{0x00, 0x10, 0x87, 0x90, 0x95, 0x97, 0x99, 0x80, 0x00}
	var recs []*outbox.Record
	for _, c := range codes {
		recs = append(recs, record("orders", fmt.Appendf(nil, "%02x", c)))
	}
	res := publishAll(t, s, recs...)
	for i, c := range codes {
		err := res[i]
		switch {
		case c < 0x80:
			if err != nil {
				t.Errorf("code 0x%02X: %v, want success", c, err)
			}
		case err == nil:
			t.Errorf("code 0x%02X: success", c)
		default:
			var rc *ReasonCodeError
			if !errors.As(err, &rc) || rc.Code != c || !strings.Contains(err.Error(), "broker says") {
				t.Errorf("code 0x%02X: %v", c, err)
			}
			if perm := c == 0x90 || c == 0x95 || c == 0x99; sink.IsPermanent(err) != perm {
				t.Errorf("code 0x%02X: permanent=%v, want %v", c, sink.IsPermanent(err), perm)
			}
			if unavailable := c == 0x87 || c == 0x97; sink.IsUnavailable(err) != unavailable {
				t.Errorf("code 0x%02X: unavailable=%v, want %v", c, sink.IsUnavailable(err), unavailable)
			}
		}
	}
}

// TestReceiveMaximum: never more messages in flight than the broker's Receive Maximum, and a
// batch far larger than it still goes through.
func TestReceiveMaximum(t *testing.T) {
	t.Parallel()
	b := startFakeBroker(t)
	b.configure(func(fb *fakeBroker) {
		fb.ackDelay = 2 * time.Millisecond
	})
	b.configure(func(fb *fakeBroker) {
		fb.connack = func(int) *packets.Connack {
			return &packets.Connack{Properties: &packets.Properties{ReceiveMaximum: u16(3)}}
		}
	})
	s := newTestSink(t, Config{Broker: b.url()})
	var recs []*outbox.Record
	for i := 0; i < 50; i++ {
		recs = append(recs, record("orders", []byte("x")))
	}
	for i, err := range publishAll(t, s, recs...) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if _, n, maxInflight, _ := b.stats(); n != 50 || maxInflight != 3 {
		t.Errorf("broker saw %d messages, at most %d in flight; want 50, 3", n, maxInflight)
	}
}

// TestMaximumPacketSize: a message larger than the broker's Maximum Packet Size fails
// permanently without being sent; the others go through.
func TestMaximumPacketSize(t *testing.T) {
	t.Parallel()
	b := startFakeBroker(t)
	b.configure(func(fb *fakeBroker) {
		fb.connack = func(int) *packets.Connack {
			return &packets.Connack{Properties: &packets.Properties{MaximumPacketSize: u32(512)}}
		}
	})
	s := newTestSink(t, Config{Broker: b.url()})
	res := publishAll(t, s, record("orders", []byte("small")), record("orders", make([]byte, 512)), record("orders", []byte("small")))
	if res[0] != nil || res[2] != nil {
		t.Errorf("small messages: %v, %v", res[0], res[2])
	}
	if !sink.IsPermanent(res[1]) || !strings.Contains(res[1].Error(), "maximum packet size of 512") {
		t.Errorf("large message: %v, want permanent", res[1])
	}
	if _, n, _, _ := b.stats(); n != 2 {
		t.Errorf("broker saw %d messages, want 2", n)
	}
}

// TestConnackRefused: a refusal retrying cannot fix fails New (without the password in the
// error), with ErrAuth for refused credentials; a passing one (server busy) leaves a sink
// that keeps trying, its publishes failing as Unavailable meanwhile.
func TestConnackRefused(t *testing.T) {
	t.Parallel()
	bad := startFakeBroker(t)
	bad.configure(func(fb *fakeBroker) {
		fb.connack = func(int) *packets.Connack {
			return &packets.Connack{ReasonCode: packets.ConnackBadUsernameOrPassword, Properties: &packets.Properties{}}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := New(ctx, Config{Broker: bad.url(), Username: "u", Password: "hunter2-secret", Logger: quiet()})
	var rerr *refusedError
	if !errors.As(err, &rerr) || rerr.code != packets.ConnackBadUsernameOrPassword || !errors.Is(err, ErrAuth) {
		t.Errorf("New with bad credentials: %v, want ErrAuth with the CONNACK code", err)
	}
	if err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error reveals the password: %v", err)
	}

	busy := startFakeBroker(t)
	busy.configure(func(fb *fakeBroker) {
		fb.connack = func(n int) *packets.Connack {
			if n == 0 {
				return &packets.Connack{ReasonCode: packets.ConnackServerBusy, Properties: &packets.Properties{}}
			}
			return &packets.Connack{Properties: &packets.Properties{}}
		}
	})
	s := newTestSink(t, Config{Broker: busy.url(), ReconnectWait: 10 * time.Millisecond})
	if err := publishAll(t, s, record("orders", nil))[0]; !errors.Is(err, ErrNotConnected) || !sink.IsUnavailable(err) || !strings.Contains(err.Error(), "server busy") {
		t.Errorf("publish before the broker accepted: %v", err)
	}
	waitOK(t, s)
}

func waitOK(t *testing.T, s *Sink) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := publishAll(t, s, record("orders", nil))[0]
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing: %v", err)
		}
		<-time.After(10 * time.Millisecond)
	}
}

// TestServerDisconnect: a DISCONNECT from the broker in the middle of a batch fails the
// messages in flight and the rest as Unavailable, with the broker's reason; the sink
// reconnects.
func TestServerDisconnect(t *testing.T) {
	t.Parallel()
	b := startFakeBroker(t)
	b.configure(func(fb *fakeBroker) {
		fb.onPublish = func(p *packets.Publish) (byte, string, byte, bool) {
			if string(p.Payload) == "kick" {
				return 0, "another client took over", 0x8E, false
			}
			return 0, "", 0, false
		}
	})
	s := newTestSink(t, Config{Broker: b.url(), ReconnectWait: 10 * time.Millisecond})
	res := publishAll(t, s, record("orders", []byte("a")), record("orders", []byte("kick")), record("orders", []byte("b")))
	for i, err := range res[1:] {
		if !errors.Is(err, ErrConnectionLost) || !sink.IsUnavailable(err) {
			t.Errorf("message %d: %v, want an Unavailable ErrConnectionLost", i+1, err)
		}
	}
	if res[1] != nil && !strings.Contains(res[1].Error(), "session taken over") {
		t.Errorf("error %q lacks the broker's reason", res[1])
	}
	b.configure(func(fb *fakeBroker) {
		fb.onPublish = func(*packets.Publish) (byte, string, byte, bool) { return 0, "", 0, false }
	})
	waitOK(t, s)
}

// TestNoPuback: a broker that never acknowledges makes Publish give up after PublishTimeout
// with Unavailable errors. The connection then counts as dead (its Receive Maximum would stay
// used up by the unacknowledged messages), and the sink reconnects.
func TestNoPuback(t *testing.T) {
	t.Parallel()
	b := startFakeBroker(t)
	b.configure(func(fb *fakeBroker) {
		fb.onPublish = func(*packets.Publish) (byte, string, byte, bool) { return 0, "", 0, true }
		fb.connack = func(int) *packets.Connack {
			return &packets.Connack{Properties: &packets.Properties{ReceiveMaximum: u16(2)}}
		}
	})
	const timeout = 200 * time.Millisecond
	s := newTestSink(t, Config{Broker: b.url(), PublishTimeout: timeout, ReconnectWait: 10 * time.Millisecond})
	start := time.Now()
	res := publishAll(t, s, record("orders", nil), record("orders", nil), record("orders", nil))
	if d := time.Since(start); d < timeout || d > timeout+2*time.Second {
		t.Errorf("Publish returned after %s, want about %s", d, timeout)
	}
	for i, err := range res {
		if !errors.Is(err, context.DeadlineExceeded) || !sink.IsUnavailable(err) {
			t.Errorf("message %d: %v, want an Unavailable timeout", i, err)
		}
	}
	b.configure(func(fb *fakeBroker) {
		fb.onPublish = func(*packets.Publish) (byte, string, byte, bool) { return 0, "", 0, false }
	})
	waitOK(t, s)
	if conns, _, _, _ := b.stats(); conns < 2 {
		t.Errorf("%d connections, want a reconnect after the timeout", conns)
	}
}

// TestKeepAlive: an idle connection is pinged; a broker that stops answering is detected
// within 1.5 keep-alive intervals and the sink reconnects.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	b := startFakeBroker(t)
	b.configure(func(fb *fakeBroker) {
		fb.noPingResp = true
	})
	s := newTestSink(t, Config{Broker: b.url(), KeepAlive: time.Second, ReconnectWait: 10 * time.Millisecond})
	deadline := time.Now().Add(10 * time.Second)
	for {
		conns, _, _, pings := b.stats()
		if conns >= 2 && pings >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: %d connections, %d pings; want a reconnect after an unanswered ping", conns, pings)
		}
		<-time.After(50 * time.Millisecond)
	}
	if err := s.lastError(); err == nil || !strings.Contains(err.Error(), "keep-alive") {
		t.Errorf("last error %v, want the keep-alive timeout", err)
	}
}

// TestAuthAtRuntime: after New the broker starts refusing the sink's credentials (CONNACK
// 0x86 on every reconnect, the first connection kicked by a DISCONNECT). The sink keeps
// redialing, logs the refusal at ERROR, Publish fails with Unavailable errors, and once the
// broker accepts the credentials again the sink publishes.
func TestAuthAtRuntime(t *testing.T) {
	t.Parallel()
	b := startFakeBroker(t)
	var refuse atomic.Bool
	b.configure(func(fb *fakeBroker) {
		fb.connack = func(int) *packets.Connack {
			if refuse.Load() {
				return &packets.Connack{ReasonCode: packets.ConnackBadUsernameOrPassword, Properties: &packets.Properties{}}
			}
			return &packets.Connack{Properties: &packets.Properties{}}
		}
		fb.onPublish = func(p *packets.Publish) (byte, string, byte, bool) {
			if string(p.Payload) == "kick" {
				return 0, "credentials revoked", 0x98, false // administrative action
			}
			return 0, "", 0, false
		}
	})
	logs := &logtest.Buffer{}
	s := newTestSink(t, Config{Broker: b.url(), Username: "u", Password: "p", ReconnectWait: 10 * time.Millisecond,
		Logger: logs.Logger()})
	if err := publishAll(t, s, record("orders", []byte("a")))[0]; err != nil {
		t.Fatalf("before: %v", err)
	}
	refuse.Store(true)
	_ = publishAll(t, s, record("orders", []byte("kick")))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "refuses the credentials") {
		if time.Now().After(deadline) {
			t.Fatalf("the refused credentials were not logged at ERROR; logs:\n%s", logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := publishAll(t, s, record("orders", []byte("b")))[0]; !sink.IsUnavailable(err) {
		t.Fatalf("publish while the credentials are refused: %v, want Unavailable", err)
	}
	refuse.Store(false)
	waitOK(t, s)
}
