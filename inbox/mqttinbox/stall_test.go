package mqttinbox_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/mqttinbox"
	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
)

// TestResumedBeforeUp: the connection is cut with messages in flight and unacknowledged;
// the resumed session's broker resends them right after its CONNACK, and here they all
// arrive before OnConnectionUp has run (as they may on a loaded machine: paho reads the
// connection before autopaho calls it). They are this connection's messages, not stale
// copies of the lost one's: every message is applied, once, in order per key. (They used to
// be dropped as stale: never applied, and with their PUBACKs missing paho held back every
// later one, so the broker resent nothing until the next reconnect: the 10-minute MQTT chaos
// profile's stall.)
func TestResumedBeforeUp(t *testing.T) {
	var ups atomic.Int32
	t.Cleanup(mqttinbox.SetConnectionUpHook(func() {
		if ups.Add(1) > 1 {
			time.Sleep(500 * time.Millisecond) // the resent messages are all in by then
		}
	}))
	s := newSession(t, brokerAddr(t))
	p := faultproxy.Start(t, s.addr)
	e := newEnv(t, inbox.Config{})
	cfg := s.config(e.in)
	cfg.Broker = "tcp://" + p.Addr()
	gate := make(chan struct{})
	entered := make(chan struct{}, 1)
	r := start(t, cfg, func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
		return e.insert(ctx, tx, m)
	})
	recs := records(slices.Repeat([]string{"a", "b", "c", ""}, 10)...)
	publish(t, s.sink(t), recs)
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery")
	}
	time.Sleep(200 * time.Millisecond) // the rest in flight, unacknowledged
	p.Cut()
	p.Restore()
	// The handler holds the lost connection's first message until the new connection is up.
	waitFor(t, "the reconnect", 30*time.Second, func() bool { return ups.Load() >= 2 })
	time.Sleep(time.Second) // OnConnectionUp has returned
	close(gate)
	e.waitEffects(t, 30*time.Second, ids(recs)...)
	got := e.applied(t)
	if len(got) != len(recs) {
		t.Errorf("%d effects for %d messages: %v", len(got), len(recs), got)
	}
	checkKeyOrder(t, got, recs, "a", "b", "c")
	if n := ups.Load(); n < 2 {
		t.Errorf("%d connections, want a reconnect", n)
	}
	// Every PUBACK went out. The resent copies are duplicates, acknowledged with no effect,
	// possibly after the effects are all in: a marker published now arrives behind them, so
	// once its effect is in they have all been through. Stopped then, the session may still
	// hold the marker (stopping can beat its PUBACK), and nothing of recs: a second marker,
	// published after the stop, comes next.
	mark := records("m")
	publish(t, s.sink(t), mark)
	e.waitEffects(t, 30*time.Second, ids(mark)...)
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	last := records("m")
	publish(t, s.sink(t), last)
	arrived := make(chan string, len(recs)+2)
	s.connect(t, false, 300, func(ctx context.Context, _ *paho.Client) {
		for {
			select {
			case id := <-arrived:
				switch id {
				case last[0].ID.String():
					return
				case mark[0].ID.String():
				default:
					t.Errorf("the session still held %s", id)
				}
			case <-ctx.Done():
				t.Error("the marker published after the stop never came")
				return
			}
		}
	}, func(p *paho.Publish) {
		arrived <- p.Properties.User.Get("id")
	})
}
