package amqpinbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/amqpinbox"
	"github.com/outboxgo/outbox/inbox/inboxtest"
	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
)

var batches = []int{1, 8}

func TestRoundTrip(t *testing.T) {
	for _, batch := range batches {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			tp := newTopology(t)
			inboxtest.RoundTrip(t, inboxtest.RoundTripHarness{
				Sink: tp.sink(t, "svc-rt"), Topic: "orders.rt", Source: "svc-rt",
				Run: func(ctx context.Context, in *inbox.Inbox, h inbox.Handler) error {
					cfg := tp.config(in)
					cfg.Batch = batch
					c, err := amqpinbox.New(cfg)
					if err != nil {
						return err
					}
					return c.Run(ctx, h)
				},
			})
		})
	}
}

// proxied points cfg at RabbitMQ through a fault proxy.
func proxied(t *testing.T, cfg amqpinbox.Config) (amqpinbox.Config, *faultproxy.Proxy) {
	t.Helper()
	p := faultproxy.Start(t, "127.0.0.1:5672")
	cfg.URL = "amqp://guest:guest@" + p.Addr() + "/"
	return cfg, p
}

// TestDuplicateAfterLostAck: the connection dies after the transaction committed and
// before the ack reached the broker; the redelivery is a Duplicate: one effect.
func TestDuplicateAfterLostAck(t *testing.T) {
	tp := newTopology(t)
	e := newEnv(t, inbox.Config{})
	cfg, p := proxied(t, tp.config(e.in))
	recs := []*outbox.Record{record("t", "k", "1"), record("t", "k", "2"), record("t", "", "3")}
	var calls, cuts atomic.Int64
	h := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		calls.Add(1)
		if m.ID == recs[1].ID.String() && cuts.Add(1) == 1 {
			p.Cut() // the ack of this delivery cannot be sent: the connection is gone
			p.Restore()
		}
		return e.insert(ctx, tx, m)
	}
	r := start(t, cfg, h)
	publish(t, tp.sink(t, "svc"), recs...)
	e.waitEffects(len(recs), 30*time.Second)
	// The redelivery of recs[1] after the reconnect: a duplicate, no handler call.
	deadline := time.Now().Add(30 * time.Second)
	for tp.ready(t) != 0 || cuts.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("queue still holds %d messages", tp.ready(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
	last := record("t", "k", "last")
	publish(t, tp.sink(t, "svc"), last)
	got := e.waitEffects(len(recs)+1, 30*time.Second)
	r.stop(t)
	checkOnce(t, got, append(recs, last))
	if n := calls.Load(); n != int64(len(recs)+1) {
		t.Errorf("handler called %d times, want %d (the redelivery must be a duplicate)", n, len(recs)+1)
	}
	if tp.ready(t) != 0 {
		t.Errorf("%d messages left in the queue", tp.ready(t))
	}
}

// TestPoison: a message whose handler always fails gets MaxAttempts deliveries, then is in
// the dead letters with its error and acked (nothing left in the queue); later messages,
// of its key too, flow.
func TestPoison(t *testing.T) {
	for _, batch := range batches {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			tp := newTopology(t)
			e := newEnv(t, inbox.Config{MaxAttempts: 3, Backoff: func(int) time.Duration { return 20 * time.Millisecond }})
			poison := record("t", "k", "poison")
			after := []*outbox.Record{record("t", "k", "a1"), record("t", "other", "a2")}
			var tries atomic.Int64
			h := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
				if m.ID == poison.ID.String() {
					tries.Add(1)
					return errors.New("poisoned payload")
				}
				return e.insert(ctx, tx, m)
			}
			cfg := tp.config(e.in)
			cfg.Batch = batch
			publish(t, tp.sink(t, "svc"), append([]*outbox.Record{poison}, after...)...)
			r := start(t, cfg, h)
			got := e.waitEffects(len(after), 30*time.Second)
			r.stop(t)
			checkOnce(t, got, after)
			// In batch mode the first delivery, when it came with others, also ran in the
			// batch's transaction, rolled back when it failed; retries go alone.
			if n, most := tries.Load(), int64(3+min(batch-1, 1)); n < 3 || n > most {
				t.Errorf("poison handled %d times, want 3 (MaxAttempts) to %d", n, most)
			}
			dead, err := e.in.DeadLetters(context.Background(), 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(dead) != 1 || dead[0].Message.ID != poison.ID.String() || dead[0].Error != "poisoned payload" || dead[0].Attempts != 3 {
				t.Fatalf("dead letters = %+v, want the poison with its error after 3 attempts", dead)
			}
			if n := tp.ready(t); n != 0 {
				t.Errorf("%d messages left in the queue after the consumer stopped, want 0 (all acked)", n)
			}
		})
	}
}

// TestOrderWithRetry: key k's first message fails twice; k's messages are applied in
// order after it, and key j's are not held back meanwhile.
func TestOrderWithRetry(t *testing.T) {
	for _, batch := range batches {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			tp := newTopology(t)
			e := newEnv(t, inbox.Config{Backoff: func(int) time.Duration { return 300 * time.Millisecond }})
			m1, m2, m3 := record("t", "k", "m1"), record("t", "k", "m2"), record("t", "k", "m3")
			j1, j2 := record("t", "j", "j1"), record("t", "j", "j2")
			var fails atomic.Int64
			h := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
				if m.ID == m1.ID.String() && fails.Add(1) <= 2 {
					return errors.New("not yet")
				}
				return e.insert(ctx, tx, m)
			}
			cfg := tp.config(e.in)
			cfg.Batch = batch
			r := start(t, cfg, h)
			publish(t, tp.sink(t, "svc"), m1, j1, m2, j2, m3)
			got := e.waitEffects(5, 30*time.Second)
			r.stop(t)
			checkOnce(t, got, []*outbox.Record{m1, j1, m2, j2, m3})
			if got[0].key != "j" || got[1].key != "j" {
				t.Errorf("effects %v: j's messages should come first, while k's first message is retried", got)
			}
			if n := fails.Load(); n != 3 {
				t.Errorf("m1 handled %d times, want 3", n)
			}
		})
	}
}

// TestRedeliveredAfterCrash: the consumer dies while the handler runs, without an ack; the
// broker's redeliveries carry the redelivered flag, so each is counted, and after
// MaxAttempts the message is dead-lettered without the handler.
func TestRedeliveredAfterCrash(t *testing.T) {
	tp := newTopology(t)
	e := newEnv(t, inbox.Config{MaxAttempts: 2})
	crash := record("t", "k", "crash")
	publish(t, tp.sink(t, "svc"), crash)
	cfg := tp.config(e.in)
	// The first delivery is not counted (not redelivered); the next two are, and crash too.
	for run := range 3 {
		in := make(chan struct{})
		h := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
			close(in)
			<-ctx.Done() // the process dies here
			return ctx.Err()
		}
		r := start(t, cfg, h)
		select {
		case <-in:
		case <-time.After(30 * time.Second):
			t.Fatalf("run %d: handler not called", run)
		}
		r.stop(t)
	}
	var called atomic.Bool
	r := start(t, cfg, func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		called.Store(true)
		return e.insert(ctx, tx, m)
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		dead, err := e.in.DeadLetters(context.Background(), 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) == 1 {
			if dead[0].Message.ID != crash.ID.String() || dead[0].Attempts != 2 {
				t.Fatalf("dead letter %+v, want the crashing message after 2 attempts", dead[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the crashing message was not dead-lettered: its redeliveries were not counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for tp.ready(t) != 0 || called.Load() {
		if called.Load() {
			t.Fatal("the handler ran a fourth time")
		}
		if time.Now().After(deadline) {
			t.Fatal("the dead-lettered message was not acked")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.stop(t)
	if n := tp.ready(t); n != 0 {
		t.Errorf("%d messages in the queue, want 0", n)
	}
}

// TestConnectionCut: the connection is cut (server side, through a TCP proxy) several
// times mid-stream; the consumer reconnects, nothing is lost, nothing applied twice, each
// key in order.
func TestConnectionCut(t *testing.T) {
	for _, batch := range batches {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			tp := newTopology(t)
			e := newEnv(t, inbox.Config{})
			cfg, p := proxied(t, tp.config(e.in))
			cfg.Batch = batch
			var recs []*outbox.Record
			for i := range 300 {
				recs = append(recs, record("t", fmt.Sprint("k", i%8), fmt.Sprint(i)))
			}
			h := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
				time.Sleep(time.Millisecond)
				return e.insert(ctx, tx, m)
			}
			s := tp.sink(t, "svc")
			publish(t, s, recs[:150]...)
			r := start(t, cfg, h)
			applied := len(e.waitEffects(20, 30*time.Second))
			for range 3 {
				p.Cut()
				time.Sleep(50 * time.Millisecond) // down for a while: redials are refused
				p.Restore()
				applied = len(e.waitEffects(min(applied+20, 150), 30*time.Second))
			}
			publish(t, s, recs[150:]...)
			got := e.waitEffects(len(recs), 60*time.Second)
			r.stop(t)
			checkOnce(t, got, recs)
			if n := tp.ready(t); n != 0 {
				t.Errorf("%d messages left in the queue", n)
			}
		})
	}
}

// TestReject: a message that is not a CloudEvent goes to the dead letters under
// amqp:<queue>:<message-id>, is acked, and the messages after it flow.
func TestReject(t *testing.T) {
	tp := newTopology(t)
	e := newEnv(t, inbox.Config{})
	ctx := context.Background()
	if err := tp.ch.PublishWithContext(ctx, tp.exchange, "app.t", false, false,
		amqp091.Publishing{MessageId: "m-1", Body: []byte("not an event")}); err != nil {
		t.Fatal(err)
	}
	if err := tp.ch.PublishWithContext(ctx, tp.exchange, "app.t", false, false,
		amqp091.Publishing{Body: []byte("no id either")}); err != nil {
		t.Fatal(err)
	}
	good := record("t", "k", "good")
	publish(t, tp.sink(t, "svc"), good)
	r := start(t, tp.config(e.in), e.insert)
	got := e.waitEffects(1, 30*time.Second)
	r.stop(t)
	checkOnce(t, got, []*outbox.Record{good})
	dead, err := e.in.DeadLetters(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 2 {
		t.Fatalf("%d dead letters, want 2: %+v", len(dead), dead)
	}
	prefix := "amqp:" + tp.queue + ":"
	if dead[0].Message.ID != prefix+"m-1" || string(dead[0].Message.Payload) != "not an event" ||
		dead[0].Message.Topic != "t" || !strings.Contains(dead[0].Error, "no id attribute") {
		t.Errorf("dead letter %+v, want %sm-1 with its payload, topic and reason", dead[0], prefix)
	}
	if !strings.HasPrefix(dead[1].Message.ID, prefix+"sha256:") || string(dead[1].Message.Payload) != "no id either" {
		t.Errorf("dead letter %+v, want %ssha256:...", dead[1], prefix)
	}
	if n := tp.ready(t); n != 0 {
		t.Errorf("%d messages left in the queue", n)
	}
}

// TestRunRefusedCredentials: wrong credentials on the first connection stop Run with an
// error that does not show the password.
func TestRunRefusedCredentials(t *testing.T) {
	tp := newTopology(t)
	e := newEnv(t, inbox.Config{})
	cfg := tp.config(e.in)
	cfg.URL = "amqp://guest:not-the-password@127.0.0.1:5672/"
	c, err := amqpinbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = c.Run(ctx, e.insert)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Run = %v, want the broker's refusal", err)
	}
	if strings.Contains(err.Error(), "not-the-password") {
		t.Errorf("error %q shows the password", err)
	}
}

func TestConfigValidate(t *testing.T) {
	in := newEnv(t, inbox.Config{}).in
	ok := amqpinbox.Config{Inbox: in, Queue: "q"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for field, mod := range map[string]func(*amqpinbox.Config){
		"inbox":            func(c *amqpinbox.Config) { c.Inbox = nil },
		"url":              func(c *amqpinbox.Config) { c.URL = "http://user:secret@host/" },
		"queue":            func(c *amqpinbox.Config) { c.Queue = "" },
		"prefetch":         func(c *amqpinbox.Config) { c.Prefetch, c.Batch = 4, 8 },
		"batch":            func(c *amqpinbox.Config) { c.Batch = -1 },
		"routing_keys":     func(c *amqpinbox.Config) { c.RoutingKeys = map[string]string{"": "x"} },
		"error_delay":      func(c *amqpinbox.Config) { c.ErrorDelay = -1 },
		"reconnect_wait":   func(c *amqpinbox.Config) { c.ReconnectWait = -1 },
		"redrive_interval": func(c *amqpinbox.Config) { c.RedriveInterval = -1 },
	} {
		cfg := ok
		mod(&cfg)
		err := cfg.Validate()
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != field {
			t.Errorf("%s: Validate = %v, want a ConfigError naming %s", field, err, field)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: error %q shows the password", field, err)
		}
		if _, err := amqpinbox.New(cfg); !errors.As(err, &ce) {
			t.Errorf("%s: New = %v, want the ConfigError", field, err)
		}
	}
}
