package relay_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/relaytest"
	"github.com/outboxgo/outbox/sink/route"
)

// pauseMessages are three keys over topics a.x and b.x: key p has a.x, b.x, a.x; q only
// b.x; r only a.x.
func pauseMessages() []outbox.Message {
	m := func(topic, key string, n int) outbox.Message {
		return outbox.Message{Topic: topic, Key: key, Payload: relaytest.Payload(key, n)}
	}
	return []outbox.Message{
		m("a.x", "p", 0), m("b.x", "q", 0), m("a.x", "r", 0), m("b.x", "p", 1), m("b.x", "q", 1),
		m("a.x", "r", 1), m("a.x", "p", 2), m("b.x", "q", 2), m("b.x", "q", 3), m("a.x", "r", 2),
	}
}

func keysOf(recs []outbox.Record) map[string]int {
	out := map[string]int{}
	for _, r := range recs {
		out[r.Key]++
	}
	return out
}

// checkHeld checks, for a while, that only key q was delivered and that the held messages
// kept their attempts, while the relay lists the pause and no outage.
func checkHeld(t *testing.T, rn *relaytest.Running, src *relaytest.Source, acked func() []outbox.Record) {
	t.Helper()
	relaytest.WaitFor(t, 10*time.Second, "key q's messages", func() bool { return keysOf(acked())["q"] == 4 })
	time.Sleep(300 * time.Millisecond) // several pause intervals
	if got := keysOf(acked()); got["p"]+got["r"] != 0 {
		t.Fatalf("delivered during the pause: %v; want only q's 4", got)
	}
	if n := attemptsSpent(src); n != 0 {
		t.Fatalf("%d attempts spent on held messages, want none", n)
	}
	if dead := src.Stats().DeadLetters; dead != 0 {
		t.Fatalf("%d dead letters during the pause", dead)
	}
	if p := rn.Relay.Paused(); len(p) != 0 {
		t.Fatalf("Paused() = %v during an operator pause, want no outage", p)
	}
	if p := rn.Relay.OperatorPauses(); len(p) != 1 {
		t.Fatalf("OperatorPauses() = %v, want the one pause", p)
	}
}

// A paused topic's messages (and the later messages of their keys, on any topic) wait with
// their attempts unchanged while the other keys flow; resumed, they are delivered in key
// order. The source delivers everything it reads (as a log source does): the engine holds.
func TestOperatorPauseTopic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := relaytest.NewSource(relaytest.SourceConfig{BatchSize: 4})
	sk := relaytest.NewSink()
	var ps relaytest.Pauses
	if err := ps.Pause(ctx, dialect.Pause{Kind: dialect.PauseTopic, Name: "a.x", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	msgs := pauseMessages()
	src.Enqueue(msgs...)
	rn := relaytest.Start(t, relay.Config{Source: src, Sink: sk, Workers: 2, Pauses: &ps, PauseInterval: 20 * time.Millisecond, MaxAttempts: 2})
	checkHeld(t, rn, src, sk.Acked)
	if err := ps.Resume(ctx, dialect.PauseTopic, "a.x"); err != nil {
		t.Fatal(err)
	}
	relaytest.WaitFor(t, 10*time.Second, "every message after the resume", func() bool { return sk.Unique() == len(msgs) })
	relaytest.CheckOrder(t, sk.Acked())
	relaytest.CheckDelivered(t, msgs, src.Published())
	if p := rn.Relay.OperatorPauses(); len(p) != 0 {
		t.Fatalf("OperatorPauses() after the resume = %v", p)
	}
}

// A paused sink receives nothing, not even a probe; the messages routed to it wait with
// their attempts unchanged and the other route flows; resumed, they are delivered in order.
func TestOperatorPauseSink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := relaytest.NewSource(relaytest.SourceConfig{BatchSize: 4})
	a, b := relaytest.NewSink(), relaytest.NewSink()
	rt, err := route.New([]route.Route{{Pattern: "a.>", Name: "sink-a", Sink: a}, {Pattern: "b.>", Name: "sink-b", Sink: b}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ps relaytest.Pauses
	rn := relaytest.Start(t, relay.Config{Source: src, Sink: rt, Workers: 2, Pauses: &ps, PauseInterval: 20 * time.Millisecond, MaxAttempts: 2})
	if err := ps.Pause(ctx, dialect.Pause{Kind: dialect.PauseSink, Name: "sink-a"}); err != nil {
		t.Fatal(err)
	}
	relaytest.WaitFor(t, 5*time.Second, "the relay to read the pause", func() bool { return len(rn.Relay.OperatorPauses()) == 1 })
	msgs := pauseMessages()
	src.Enqueue(msgs...)
	checkHeld(t, rn, src, b.Acked)
	if n := a.Started(); n != 0 {
		t.Fatalf("the paused sink got %d publish calls, want none (no probe)", n)
	}
	if err := ps.Resume(ctx, dialect.PauseSink, "sink-a"); err != nil {
		t.Fatal(err)
	}
	relaytest.WaitFor(t, 10*time.Second, "every message after the resume", func() bool { return a.Unique()+b.Unique() == len(msgs) })
	relaytest.CheckDelivered(t, msgs, src.Published())
}

// A failed read of the pauses keeps the pauses read before: a database that stops
// answering resumes nothing.
func TestOperatorPauseKeptWhileUnreadable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	var ps relaytest.Pauses
	if err := ps.Pause(ctx, dialect.Pause{Kind: dialect.PauseTopic, Name: "a.x"}); err != nil {
		t.Fatal(err)
	}
	rn := relaytest.Start(t, relay.Config{Source: src, Sink: sk, Pauses: &ps, PauseInterval: 10 * time.Millisecond})
	relaytest.WaitFor(t, 5*time.Second, "the relay to read the pause", func() bool { return len(rn.Relay.OperatorPauses()) == 1 })
	ps.SetError(errors.New("database unreachable"))
	reads := ps.Reads()
	relaytest.WaitFor(t, 5*time.Second, "failed reads", func() bool { return ps.Reads() > reads+3 })
	src.Enqueue(outbox.Message{Topic: "a.x", Key: "k", Payload: []byte("k:0")}, outbox.Message{Topic: "b.x", Key: "j", Payload: []byte("j:0")})
	relaytest.WaitFor(t, 5*time.Second, "the other topic", func() bool { return sk.Unique() == 1 })
	time.Sleep(100 * time.Millisecond)
	if n := sk.Unique(); n != 1 || len(rn.Relay.OperatorPauses()) != 1 {
		t.Fatalf("with the pauses unreadable: %d delivered, pauses %v; want 1 and the pause kept", n, rn.Relay.OperatorPauses())
	}
	ps.SetError(nil)
	if err := ps.Resume(ctx, dialect.PauseTopic, "a.x"); err != nil {
		t.Fatal(err)
	}
	relaytest.WaitFor(t, 5*time.Second, "the resumed topic", func() bool { return sk.Unique() == 2 })
}

// excludingSource is relaytest's source with relay.TopicExcluder, as relay/poll has it: it
// records what it is told and leaves those topics' messages unread.
type excludingSource struct {
	*relaytest.Source
	calls chan []string
}

func (s *excludingSource) ExcludeTopics(topics []string) { s.calls <- topics }

// With a source that excludes topics, the relay tells it the paused topics, and the topics it
// found routed to a paused sink, and tells it again when they resume.
func TestOperatorPauseExcludesTopics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := &excludingSource{Source: relaytest.NewSource(relaytest.SourceConfig{}), calls: make(chan []string, 100)}
	a, b := relaytest.NewSink(), relaytest.NewSink()
	rt, err := route.New([]route.Route{{Pattern: "a.>", Name: "sink-a", Sink: a}, {Pattern: "b.>", Name: "sink-b", Sink: b}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ps relaytest.Pauses
	if err := ps.Pause(ctx, dialect.Pause{Kind: dialect.PauseTopic, Name: "b.y"}); err != nil {
		t.Fatal(err)
	}
	if err := ps.Pause(ctx, dialect.Pause{Kind: dialect.PauseSink, Name: "sink-a"}); err != nil {
		t.Fatal(err)
	}
	relaytest.Start(t, relay.Config{Source: src, Sink: rt, Pauses: &ps, PauseInterval: 10 * time.Millisecond})
	next := func(want string) {
		t.Helper()
		select {
		case got := <-src.calls:
			if fmt.Sprint(got) != want {
				t.Fatalf("ExcludeTopics(%v), want %s", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no ExcludeTopics call, want %s", want)
		}
	}
	next("[b.y]")
	src.Enqueue(outbox.Message{Topic: "a.z", Key: "k", Payload: []byte("k:0")})
	next("[a.z b.y]") // learned: a.z goes to the paused sink
	if err := ps.Resume(ctx, dialect.PauseSink, "sink-a"); err != nil {
		t.Fatal(err)
	}
	next("[b.y]")
	relaytest.WaitFor(t, 5*time.Second, "a.z after the resume", func() bool { return a.Unique() == 1 })
	if err := ps.Resume(ctx, dialect.PauseTopic, "b.y"); err != nil {
		t.Fatal(err)
	}
	next("[]")
	if a.Started() != 1 {
		t.Errorf("the paused sink got %d publish calls, want only the one after the resume", a.Started())
	}
}
