package relay

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
)

// A paused destination admits nothing before its probe time, then exactly one probe at a
// time; a failed probe doubles the wait (jittered, capped); an answer ends the pause.
func TestPausesProbeOneAtATime(t *testing.T) {
	p := &pauses{logger: slog.New(slog.DiscardHandler), maxProbe: 4 * time.Second, summary: time.Minute}
	now := time.Now()
	if a := p.admit("nats", now); !a.ok || a.probe {
		t.Fatalf("a healthy destination: %+v", a)
	}
	down := errors.New("connection refused")
	until := p.failed("nats", false, down, now)
	if w := until.Sub(now); w < probeBase/2 || w > probeBase {
		t.Fatalf("first wait %v, want between %v and %v", w, probeBase/2, probeBase)
	}
	if a := p.admit("nats", now.Add(until.Sub(now)/2)); a.ok || a.err != down.Error() || !a.until.Equal(until) {
		t.Fatalf("before the probe time: %+v", a)
	}
	if a := p.admit("other", now); !a.ok {
		t.Fatal("another destination was paused too")
	}
	at := until
	if a := p.admit("nats", at); !a.ok || !a.probe {
		t.Fatalf("at the probe time: %+v, want the probe", a)
	}
	if a := p.admit("nats", at); a.ok {
		t.Fatal("a second probe was admitted while one is in flight")
	}
	waits := []time.Duration{}
	for range 5 {
		next := p.failed("nats", true, down, at)
		waits = append(waits, next.Sub(at))
		at = next
		if a := p.admit("nats", at); !a.probe {
			t.Fatalf("no probe at %v", at)
		}
	}
	for i, w := range waits {
		ceil := min(p.maxProbe, probeBase<<(i+1))
		if w < ceil/2 || w > ceil {
			t.Errorf("wait %d = %v, want between %v and %v", i+1, w, ceil/2, ceil)
		}
	}
	p.available("nats", at)
	if a := p.admit("nats", at); !a.ok || a.probe {
		t.Fatalf("after the answer: %+v", a)
	}
}

// Remembered outcomes are applied instead of publishing again; a remembered retry holds its
// key's later messages; a reused sequence number with another id is not the same message.
func TestUnrecordedReplay(t *testing.T) {
	rec := func(seq int64, key string) outbox.Record {
		return outbox.Record{Seq: seq, Message: outbox.Message{ID: uuid.Must(uuid.NewV7()), Key: key}}
	}
	recs := []outbox.Record{rec(1, "a"), rec(2, "a"), rec(3, "b"), rec(4, "b"), rec(5, "c")}
	var u unrecorded
	u.remember(recs, outbox.Outcome{Published: []int64{1, 3}, Duplicates: []int64{3},
		Retry: []outbox.Retry{{Seq: 4, Delay: time.Minute, Error: "x"}, {Seq: 5, Delay: time.Minute, NotAttempted: true}}})
	again := append([]outbox.Record(nil), recs...)
	again = append(again, rec(6, "b"))
	again[1].ID = uuid.Must(uuid.NewV7()) // seq 2 is another message now: not remembered anyway
	o, rest := u.replay(again)
	if len(o.Published) != 2 || o.Published[0] != 1 || o.Published[1] != 3 || len(o.Duplicates) != 1 {
		t.Fatalf("published %v duplicates %v", o.Published, o.Duplicates)
	}
	if len(o.Retry) != 1 || o.Retry[0].Seq != 4 || o.Retry[0].Delay <= 50*time.Second {
		t.Fatalf("retry %+v", o.Retry)
	}
	var seqs []int64
	for _, r := range rest {
		seqs = append(seqs, r.Seq)
	}
	// 2 (a's next), 5 (not attempted: not remembered); 6 waits behind b's remembered retry.
	if len(seqs) != 2 || seqs[0] != 2 || seqs[1] != 5 {
		t.Fatalf("to publish: %v, want [2 5]", seqs)
	}
	u.forget(o)
	if o, rest := u.replay(recs); len(o.Published)+len(o.Retry) != 0 || len(rest) != len(recs) {
		t.Fatalf("after forget: %+v, %d to publish", o, len(rest))
	}
}
