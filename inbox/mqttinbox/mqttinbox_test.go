package mqttinbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/inboxtest"
	"github.com/outboxgo/outbox/inbox/mqttinbox"
	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
)

// TestRoundTrip runs the conformance check. inboxtest.RoundTripRecords carries a header
// "x-tenant", which the MQTT sink refuses by design (under the MQTT binding every user
// property is a CloudEvents attribute: lower-case letters and digits only), so RoundTrip
// cannot publish its records through it; TestRoundTripRecords checks the same records with
// that header renamed.
func TestRoundTrip(t *testing.T) {
	s := newSession(t, brokerAddr(t))
	inboxtest.RoundTrip(t, inboxtest.RoundTripHarness{
		Sink: s.sink(t), Topic: "orders.round.trip", Source: "mqttinbox-test",
		Run: func(ctx context.Context, in *inbox.Inbox, h inbox.Handler) error {
			c, err := mqttinbox.New(s.config(in))
			if err != nil {
				return err
			}
			return c.Run(ctx, h)
		},
	})
}

func TestDuplicatePublished(t *testing.T) {
	for _, batch := range []int{1, 8} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			s := newSession(t, brokerAddr(t))
			e := newEnv(t, inbox.Config{})
			sk := s.sink(t)
			recs := records("a", "a", "b", "")
			publish(t, sk, recs)
			publish(t, sk, recs)
			last := records("a")
			publish(t, sk, last)
			cfg := s.config(e.in)
			cfg.Batch = batch
			start(t, cfg, e.insert)
			e.waitEffects(t, 30*time.Second, ids(last)...)
			if got, want := e.applied(t), append(ids(recs), ids(last)...); !slices.Equal(got, want) {
				t.Fatalf("effects %v, want %v", got, want)
			}
		})
	}
}

// TestAckLost: the connection is cut while the handler runs, so the ack after the commit is
// lost; the broker redelivers on the resumed session (DUP): no second effect.
func TestAckLost(t *testing.T) {
	s := newSession(t, brokerAddr(t))
	p := faultproxy.Start(t, s.addr)
	e := newEnv(t, inbox.Config{})
	recs := records("k", "k", "")
	var calls atomic.Int32
	cfg := s.config(e.in)
	cfg.Broker = "tcp://" + p.Addr()
	start(t, cfg, func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		if calls.Add(1) == 1 {
			p.Cut() // the commit happens, its PUBACK cannot go out
			p.Restore()
		}
		return e.insert(ctx, tx, m)
	})
	publish(t, s.sink(t), recs)
	e.waitEffects(t, 30*time.Second, ids(recs)...)
	last := records("k")
	publish(t, s.sink(t), last)
	e.waitEffects(t, 30*time.Second, ids(last)...)
	if got, want := e.applied(t), append(ids(recs), ids(last)...); !slices.Equal(got, want) {
		t.Fatalf("effects %v, want %v", got, want)
	}
}

// TestPoison: a handler that always fails gets MaxAttempts deliveries, then the message is a
// dead letter with the error, acknowledged (the session holds nothing for it), and later
// messages of its key and others flow.
func TestPoison(t *testing.T) {
	for _, batch := range []int{1, 8} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			s := newSession(t, brokerAddr(t))
			e := newEnv(t, inbox.Config{MaxAttempts: 3, Backoff: func(int) time.Duration { return 20 * time.Millisecond }})
			recs := records("k", "k", "j", "")
			poison := recs[0].ID.String()
			var calls atomic.Int32
			cfg := s.config(e.in)
			cfg.Batch = batch
			r := start(t, cfg, func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
				if m.ID == poison {
					calls.Add(1)
					return errors.New("poison pill")
				}
				return e.insert(ctx, tx, m)
			})
			publish(t, s.sink(t), recs)
			e.waitEffects(t, 30*time.Second, ids(recs[1:])...)
			// In batch mode the first failure may run the handler twice: in the batch, then
			// alone (DeliverBatch's fallback); the deliveries are still MaxAttempts.
			if n := calls.Load(); n != 3 && (batch == 1 || n != 4) {
				t.Errorf("poison handled %d times, want MaxAttempts = 3 deliveries", n)
			}
			dead, err := e.in.DeadLetters(context.Background(), 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(dead) != 1 || dead[0].Message.ID != poison || dead[0].Error != "poison pill" {
				t.Fatalf("dead letters %+v, want the poison with its error", dead)
			}
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
			// Nothing pending in the session: a marker published now is the first thing it
			// delivers (a broker resends unacknowledged messages before new ones).
			marker := records("m")
			publish(t, s.sink(t), marker)
			first := make(chan string, 16)
			s.connect(t, false, 300, func(ctx context.Context, _ *paho.Client) {
				select {
				case id := <-first:
					if id != marker[0].ID.String() {
						t.Errorf("the session still held %s", id)
					}
				case <-ctx.Done():
					t.Error("the marker never came")
				}
			}, func(p *paho.Publish) {
				for _, u := range p.Properties.User {
					if u.Key == "id" {
						first <- u.Value
					}
				}
			})
		})
	}
}

// TestOrderWithRetry: m1 of key k fails twice, then succeeds: m1, m2, m3 apply in order,
// and key j's messages are not held behind k.
func TestOrderWithRetry(t *testing.T) {
	for _, batch := range []int{1, 8} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			s := newSession(t, brokerAddr(t))
			e := newEnv(t, inbox.Config{Backoff: func(int) time.Duration { return 300 * time.Millisecond }})
			recs := records("k", "k", "k", "j", "j", "")
			m1 := recs[0].ID.String()
			var fails atomic.Int32
			cfg := s.config(e.in)
			cfg.Batch = batch
			start(t, cfg, func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
				if m.ID == m1 && fails.Load() < 2 {
					fails.Add(1)
					return errors.New("not yet")
				}
				return e.insert(ctx, tx, m)
			})
			publish(t, s.sink(t), recs)
			e.waitEffects(t, 30*time.Second, ids(recs)...)
			got := e.applied(t)
			pos := func(id string) int { return slices.Index(got, id) }
			if !(pos(m1) < pos(recs[1].ID.String()) && pos(recs[1].ID.String()) < pos(recs[2].ID.String())) {
				t.Errorf("key k applied as %v, want m1, m2, m3", got)
			}
			for _, r := range recs[3:] {
				if pos(r.ID.String()) > pos(m1) {
					t.Errorf("%s (key %q) waited for key k's retry: %v", r.ID, r.Key, got)
				}
			}
			if len(got) != len(recs) {
				t.Errorf("%d effects, want %d", len(got), len(recs))
			}
		})
	}
}

// TestRedeliveredAfterCrash: the consumer stops while the handler runs, twice: the broker
// redelivers with DUP set, the inbox counts the deliveries, and with MaxAttempts 1 the
// message is dead-lettered on the third delivery without a third handler call.
func TestRedeliveredAfterCrash(t *testing.T) {
	s := newSession(t, brokerAddr(t))
	e := newEnv(t, inbox.Config{MaxAttempts: 1})
	recs := records("k")
	publish(t, s.sink(t), recs)
	var calls atomic.Int32
	for i := range 2 {
		entered := make(chan struct{})
		r := start(t, s.config(e.in), func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
			calls.Add(1)
			close(entered)
			<-ctx.Done() // the process "crashes" here: nothing commits, nothing is acked
			return ctx.Err()
		})
		select {
		case <-entered:
		case <-time.After(30 * time.Second):
			t.Fatalf("delivery %d never came", i+1)
		}
		if err := r.stop(); err != nil {
			t.Fatal(err)
		}
	}
	start(t, s.config(e.in), func(context.Context, outbox.Tx, inbox.Message) error {
		calls.Add(1)
		return errors.New("a third call")
	})
	waitFor(t, "the dead letter", 30*time.Second, func() bool {
		dead, err := e.in.DeadLetters(context.Background(), 0, 10)
		return err == nil && len(dead) == 1 && dead[0].Message.ID == recs[0].ID.String()
	})
	if n := calls.Load(); n != 2 {
		t.Errorf("handler called %d times, want 2 (the second delivery counted as attempt 1, the third dead-lettered)", n)
	}
}

// TestBrokerRestart: a private Mosquitto restarted while the consumer runs, messages
// published before and after: every one applied once.
func TestBrokerRestart(t *testing.T) {
	m := startMosquitto(t)
	s := newSession(t, m.addr)
	e := newEnv(t, inbox.Config{})
	sk := s.sink(t)
	before := records(slices.Repeat([]string{"a", "b", ""}, 20)...)
	publish(t, sk, before)
	var mu sync.Mutex
	gate := make(chan struct{})
	n := 0
	start(t, s.config(e.in), func(ctx context.Context, tx outbox.Tx, msg inbox.Message) error {
		mu.Lock()
		n++
		wait := n == 10
		mu.Unlock()
		if wait {
			<-gate // hold the 10th until the broker is down
		}
		return e.insert(ctx, tx, msg)
	})
	waitFor(t, "the 10th message", 30*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return n >= 10 })
	m.stop()
	close(gate)
	m.restart()
	after := records(slices.Repeat([]string{"a", "b", ""}, 20)...)
	waitFor(t, "the sink to reconnect", 30*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return sk.Publish(ctx, after[:1])[0] == nil
	})
	publish(t, sk, after[1:])
	all := append(ids(before), ids(after)...)
	e.waitEffects(t, 60*time.Second, all...)
	got := e.applied(t)
	if len(got) != len(all) {
		t.Errorf("%d effects for %d messages: %v", len(got), len(all), got)
	}
	// Per key, the order of publication.
	checkKeyOrder(t, got, append(slices.Clone(before), after...), "a", "b")
}

// TestUnreadable: a message that is no CloudEvent is rejected to the dead letters under a
// stable id, acked, and later messages flow.
func TestUnreadable(t *testing.T) {
	s := newSession(t, brokerAddr(t))
	e := newEnv(t, inbox.Config{})
	start(t, s.config(e.in), e.insert)
	s2 := session{addr: s.addr, clientID: unique("mqttinbox-raw-")}
	s2.connect(t, true, 0, func(ctx context.Context, c *paho.Client) {
		if _, err := c.Publish(ctx, &paho.Publish{Topic: s.prefix + "orders/raw", QoS: 1, Payload: []byte("not an event")}); err != nil {
			t.Fatal(err)
		}
	}, nil)
	recs := records("k")
	publish(t, s.sink(t), recs)
	e.waitEffects(t, 30*time.Second, ids(recs)...)
	dead, err := e.in.DeadLetters(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Message.Topic != "orders.raw" || string(dead[0].Message.Payload) != "not an event" ||
		dead[0].Error == "" || len(dead[0].Message.ID) < len("mqtt:"+s.prefix) {
		t.Fatalf("dead letters %+v", dead)
	}
	t.Logf("rejected as %s: %s", dead[0].Message.ID, dead[0].Error)
}

func TestConfigValidate(t *testing.T) {
	e := &inbox.Inbox{}
	ok := mqttinbox.Config{Inbox: e, ClientID: "c"}
	for _, tc := range []struct {
		field string
		edit  func(*mqttinbox.Config)
	}{
		{"inbox", func(c *mqttinbox.Config) { c.Inbox = nil }},
		{"client_id", func(c *mqttinbox.Config) { c.ClientID = "" }},
		{"broker", func(c *mqttinbox.Config) { c.Broker = "http://x" }},
		{"broker", func(c *mqttinbox.Config) { c.Broker = "tcp://u:secret@host" }},
		{"username", func(c *mqttinbox.Config) { c.Password = "p" }},
		{"topic_prefix", func(c *mqttinbox.Config) { c.TopicPrefix = "a/#" }},
		{"session_expiry", func(c *mqttinbox.Config) { c.SessionExpiry = time.Millisecond }},
		{"keep_alive", func(c *mqttinbox.Config) { c.KeepAlive = -1 }},
		{"receive_maximum", func(c *mqttinbox.Config) { c.ReceiveMaximum = 70000 }},
		{"batch", func(c *mqttinbox.Config) { c.Batch = -1 }},
	} {
		c := ok
		tc.edit(&c)
		err := c.Validate()
		var cerr *outbox.ConfigError
		if !errors.As(err, &cerr) || cerr.Field != tc.field {
			t.Errorf("%s: Validate = %v, want a ConfigError for %s", tc.field, err, tc.field)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("the error quotes the password: %v", err)
		}
		if _, err := mqttinbox.New(c); err == nil {
			t.Errorf("%s: New accepted it", tc.field)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}
