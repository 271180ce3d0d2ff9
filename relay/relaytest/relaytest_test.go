package relaytest_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/relaytest"
	"github.com/outboxgo/outbox/sink"
)

// next claims a batch, failing the test when none comes within a second.
func next(t *testing.T, src *relaytest.Source) relay.Batch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	b, err := src.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return b
}

// none checks that nothing is claimable now.
func none(t *testing.T, src *relaytest.Source) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if b, err := src.Next(ctx); err == nil {
		t.Fatalf("claimed %v, want nothing claimable", payloads(b.Records()))
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next: %v, want the context's error", err)
	}
}

func finish(t *testing.T, b relay.Batch, o outbox.Outcome) {
	t.Helper()
	if err := b.Finish(context.Background(), o); err != nil {
		t.Fatalf("Finish: %v", err)
	}
}

func payloads(recs []outbox.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Payload))
	}
	return out
}

func seqs(recs []outbox.Record) []int64 {
	var out []int64
	for _, r := range recs {
		out = append(out, r.Seq)
	}
	return out
}

func msg(key string, n int) outbox.Message {
	return outbox.Message{Topic: "t", Key: key, Payload: relaytest.Payload(key, n)}
}

// A key held by one batch is not in another, even with the batch size left over; its next
// message comes once the first is finished.
func TestSourceHoldsKeys(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{BatchSize: 1})
	src.Enqueue(msg("a", 0), msg("a", 1), msg("b", 0))
	first := next(t, src)
	if got := payloads(first.Records()); !slices.Equal(got, []string{"a:0"}) {
		t.Fatalf("first batch %v", got)
	}
	second := next(t, src)
	if got := payloads(second.Records()); !slices.Equal(got, []string{"b:0"}) {
		t.Fatalf("second batch %v, want b:0 (a:1 waits for a:0)", got)
	}
	none(t, src)
	if st := src.Stats(); st.Held != 2 || st.Claims != 2 {
		t.Fatalf("stats %+v, want 2 held in 2 claims", st)
	}
	finish(t, second, outbox.Outcome{Published: seqs(second.Records())})
	finish(t, first, outbox.Outcome{Published: seqs(first.Records())})
	if got := payloads(next(t, src).Records()); !slices.Equal(got, []string{"a:1"}) {
		t.Fatalf("third batch %v, want a:1", got)
	}
}

// A retry spends an attempt, records the error and holds the key until its delay passed; a
// retry that was not attempted keeps the attempts; released messages come back unchanged.
func TestSourceRetry(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	recs := src.Enqueue(msg("a", 0), msg("a", 1), msg("b", 0), msg("c", 0))
	b := next(t, src)
	if len(b.Records()) != 4 {
		t.Fatalf("claimed %v", payloads(b.Records()))
	}
	finish(t, b, outbox.Outcome{
		Published: []int64{recs[2].Seq},
		Retry: []outbox.Retry{
			{Seq: recs[0].Seq, Delay: 50 * time.Millisecond, Error: "broker down"},
			{Seq: recs[3].Seq, Delay: time.Hour, Error: "sink unavailable", NotAttempted: true},
		},
	})
	none(t, src) // a:0 backs off and a:1 waits behind it; c:0 waits an hour
	p, ok := src.Get(recs[0].Seq)
	if !ok || p.Attempts != 1 || p.LastError != "broker down" || p.Held || time.Until(p.AvailableAt) > 50*time.Millisecond {
		t.Fatalf("a:0 after its retry: %+v", p)
	}
	if p, _ := src.Get(recs[3].Seq); p.Attempts != 0 || p.LastError != "sink unavailable" {
		t.Fatalf("c:0 after a retry not attempted: %+v", p)
	}
	if p, _ := src.Get(recs[1].Seq); p.Attempts != 0 || p.LastError != "" {
		t.Fatalf("a:1 released: %+v", p)
	}
	start := time.Now()
	b = next(t, src) // waits for a:0's delay
	if got := payloads(b.Records()); !slices.Equal(got, []string{"a:0", "a:1"}) || b.Records()[0].Attempts != 1 {
		t.Fatalf("after the delay: %v (%+v)", got, b.Records())
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Errorf("claimable again after %v, before its delay", d)
	}
	finish(t, b, outbox.Outcome{})
	if got := src.Backlog(); len(got) != 3 || got[0].Attempts != 1 || got[1].Attempts != 0 {
		t.Fatalf("backlog after a release: %+v", got)
	}
}

// A dead letter spends its attempt and lets the key move on; retried, it comes back behind
// the backlog with attempts 0, under its message id.
func TestSourceDeadLetters(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	recs := src.Enqueue(msg("a", 0), msg("a", 1))
	src.SetAttempts(recs[0].Seq, 2)
	b := next(t, src)
	finish(t, b, outbox.Outcome{Dead: []outbox.Dead{{Seq: recs[0].Seq, Error: "after 3 attempts: rejected"}}})
	dls := src.DeadLetters()
	if len(dls) != 1 || dls[0].ID != 1 || dls[0].Record.ID != recs[0].ID || dls[0].Record.Attempts != 3 || dls[0].Reason != "after 3 attempts: rejected" {
		t.Fatalf("dead letters %+v", dls)
	}
	b = next(t, src)
	if got := payloads(b.Records()); !slices.Equal(got, []string{"a:1"}) {
		t.Fatalf("after the dead letter: %v, want a:1", got)
	}
	finish(t, b, outbox.Outcome{Published: seqs(b.Records()), Duplicates: seqs(b.Records())})
	if n := src.RetryDeadLetters(); n != 1 {
		t.Fatalf("RetryDeadLetters = %d", n)
	}
	b = next(t, src)
	if r := b.Records(); len(r) != 1 || r[0].ID != recs[0].ID || r[0].Attempts != 0 || r[0].Seq <= recs[1].Seq {
		t.Fatalf("retried dead letter %+v", r)
	}
	finish(t, b, outbox.Outcome{Published: seqs(b.Records())})
	st := src.Stats()
	if st.Pending != 0 || st.DeadLetters != 0 || st.Published != 2 || st.Duplicates != 1 || st.Finishes != 3 {
		t.Fatalf("stats %+v", st)
	}
	if got := payloads(src.PublishedByKey()["a"]); !slices.Equal(got, []string{"a:1", "a:0"}) {
		t.Fatalf("published of a: %v", got)
	}
}

// Outcomes a store would refuse are refused whole: nothing changes, the messages are
// released; so are outcomes a scripted failure refuses.
func TestSourceRefusesOutcomes(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{BatchSize: 1})
	recs := src.Enqueue(msg("a", 0), msg("b", 0))
	held := recs[0].Seq
	for _, o := range []outbox.Outcome{
		{Published: []int64{held, recs[1].Seq}},                                    // not held by the batch
		{Published: []int64{held}, Retry: []outbox.Retry{{Seq: held, Error: "x"}}}, // twice
		{Retry: []outbox.Retry{{Seq: held, Error: "broker said \x00"}}},            // NUL
		{Dead: []outbox.Dead{{Seq: held, Error: "broker said \xff"}}},              // not UTF-8
		{Duplicates: []int64{held}},                                                // not published
	} {
		b := next(t, src)
		if err := b.Finish(context.Background(), o); err == nil {
			t.Fatalf("Finish(%+v): no error", o)
		}
		if p, _ := src.Get(held); p.Attempts != 0 || p.Held || p.LastError != "" {
			t.Fatalf("after a refused outcome: %+v", p)
		}
	}
	errRefused := errors.New("refused (test)")
	src.SetFinishError(func(o outbox.Outcome) error {
		if len(o.Published) > 0 {
			return errRefused
		}
		return nil
	})
	b := next(t, src)
	if err := b.Finish(context.Background(), outbox.Outcome{Published: seqs(b.Records())}); !errors.Is(err, errRefused) {
		t.Fatalf("Finish with a scripted failure: %v", err)
	}
	if err := b.Finish(context.Background(), outbox.Outcome{}); err == nil {
		t.Fatal("a batch finished twice")
	}
	src.SetFinishError(nil)
	b = next(t, src)
	finish(t, b, outbox.Outcome{Published: seqs(b.Records())})
	if st := src.Stats(); st.FailedFinishes != 6 || st.Finishes != 1 || st.Published != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Concurrent callers get disjoint batches and every message once; Next waits for messages and
// ends with its context.
func TestSourceConcurrentAndWaiting(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{BatchSize: 7})
	var (
		mu   sync.Mutex
		seen = map[int64]int{}
		wg   sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(context.Background())
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				b, err := src.Next(ctx)
				if err != nil {
					return
				}
				keys := map[string]bool{}
				mu.Lock()
				for _, r := range b.Records() {
					seen[r.Seq]++
					keys[r.Key] = true
				}
				mu.Unlock()
				for k := range keys {
					for _, p := range src.Backlog() {
						if p.Key == k && p.Held && !slices.Contains(seqs(b.Records()), p.Seq) {
							t.Errorf("key %s held by two batches", k)
						}
					}
				}
				_ = b.Finish(context.Background(), outbox.Outcome{Published: seqs(b.Records())})
			}
		}()
	}
	time.Sleep(10 * time.Millisecond) // the callers wait for messages
	src.Enqueue(relaytest.Messages(10, 0, 20)...)
	relaytest.WaitFor(t, 5*time.Second, "every message published", func() bool { return src.Stats().Published == 200 })
	cancel()
	wg.Wait()
	for seq, n := range seen {
		if n != 1 {
			t.Errorf("message %d claimed %d times", seq, n)
		}
	}
	relaytest.CheckOrder(t, src.Published())
}

// Rules match by topic, key, attempt and count, and answer with their error, a Retry-After, a
// delay or a block; everything acknowledged is recorded.
func TestSinkScript(t *testing.T) {
	t.Parallel()
	sk := relaytest.NewSink()
	down := errors.New("down")
	sk.Script(relaytest.Rule{Topic: "a", Key: "x", Err: sink.Permanentf("refused")})
	sk.Script(relaytest.Rule{Topic: "a", Attempt: 2, Err: sink.Unavailable(down)})
	sk.Script(relaytest.Rule{Key: "dup", Err: sink.Duplicate("seq 1")})
	sk.Script(relaytest.Rule{Key: "twice", Times: 2, Err: errors.New("busy"), RetryAfter: time.Second})
	rec := func(topic, key string, attempts int) *outbox.Record {
		return &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: topic, Key: key}, Attempts: attempts}
	}
	recs := []*outbox.Record{rec("a", "x", 0), rec("a", "y", 1), rec("a", "y", 0), rec("b", "dup", 0), rec("b", "twice", 0)}
	res := sk.Publish(context.Background(), recs)
	var ra sink.RetryAfter
	if !sink.IsPermanent(res[0]) || !errors.Is(res[1], down) || !sink.IsUnavailable(res[1]) || res[2] != nil ||
		!sink.IsDuplicate(res[3]) || !errors.As(res[4], &ra) || ra.RetryAfter() != time.Second || res[4].Error() != "busy" {
		t.Fatalf("results %v", res)
	}
	res = sk.Publish(context.Background(), []*outbox.Record{recs[4], recs[4]})
	if res[0] == nil || res[1] != nil {
		t.Fatalf("a rule of 2 times, 3rd and 4th match: %v", res)
	}
	if sk.Unique() != 3 || len(sk.Acked()) != 3 || sk.Duplicates() != 0 || len(sk.Calls()) != 2 {
		t.Fatalf("unique %d acked %d calls %d", sk.Unique(), len(sk.Acked()), len(sk.Calls()))
	}
	sk.Publish(context.Background(), []*outbox.Record{recs[2]})
	if sk.Duplicates() != 1 || sk.Counts()[recs[2].ID.String()] != 2 {
		t.Fatalf("duplicates %d counts %v", sk.Duplicates(), sk.Counts())
	}

	gate := make(chan struct{})
	release := sk.Script(relaytest.Rule{Topic: "slow", Block: gate})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if res := sk.Publish(ctx, []*outbox.Record{rec("slow", "k", 0), rec("b", "k", 0)}); !errors.Is(res[0], context.DeadlineExceeded) || !errors.Is(res[1], context.DeadlineExceeded) {
		t.Fatalf("blocked past its context: %v", res)
	}
	go func() { time.Sleep(10 * time.Millisecond); close(gate) }()
	if res := sk.Publish(context.Background(), []*outbox.Record{rec("slow", "k", 0)}); res[0] != nil {
		t.Fatalf("after the release: %v", res)
	}
	release()
	sk.Script(relaytest.Rule{Topic: "slow", Delay: 30 * time.Millisecond})
	start := time.Now()
	sk.Publish(context.Background(), []*outbox.Record{rec("slow", "k", 0)})
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("a delayed call answered after %v", d)
	}
	_ = sk.Close()
	if res := sk.Publish(context.Background(), []*outbox.Record{rec("b", "k", 0)}); !sink.IsUnavailable(res[0]) {
		t.Fatalf("after Close: %v", res)
	}
}

// fakeTB records the failure of a check instead of failing the test.
type fakeTB struct {
	testing.TB
	failure string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatal(args ...any) {
	f.failure = fmt.Sprint(args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failure = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// failure runs check with a fakeTB and returns its failure ("" when it passed).
func failure(t *testing.T, check func(tb testing.TB)) string {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(f)
	}()
	<-done
	return f.failure
}

// The order checks catch a message out of its key's order, a lost message and one that was
// never sent, and count duplicates.
func TestOrderChecks(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sent := relaytest.Messages(2, 0, 3)
	recs := src.Enqueue(sent...)
	// recs: k0:0 k1:0 k0:1 k1:1 k0:2 k1:2
	inOrder := []outbox.Record{recs[1], recs[0], recs[3], recs[2], recs[2], recs[4], recs[5]}
	if f := failure(t, func(tb testing.TB) {
		if dups := relaytest.CheckDelivered(tb, sent, inOrder); dups != 1 {
			tb.Fatalf("%d duplicates, want 1", dups)
		}
	}); f != "" {
		t.Fatalf("in order: %s", f)
	}
	for name, tc := range map[string]struct {
		delivered []outbox.Record
		want      string
	}{
		"overtaken": {[]outbox.Record{recs[0], recs[4], recs[2]}, "key k0: got n 2, want 1"},
		"lost":      {[]outbox.Record{recs[0], recs[1], recs[2], recs[3], recs[5]}, `5 of 6 messages delivered; lost: "k0:2"`},
		"not sent":  {append(slices.Clone(inOrder), outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Key: "k9", Payload: []byte("k9:0")}}), "which was not sent"},
		"bad key":   {[]outbox.Record{{Message: outbox.Message{ID: recs[0].ID, Key: "k1", Payload: recs[0].Payload}}}, `payload "k0:0" delivered with key "k1"`},
	} {
		f := failure(t, func(tb testing.TB) { relaytest.CheckDelivered(tb, sent, tc.delivered) })
		if !strings.Contains(f, tc.want) {
			t.Errorf("%s: failure %q, want %q", name, f, tc.want)
		}
	}
}

// Start runs a relay until the test ends; Stop returns Run's error.
func TestStart(t *testing.T) {
	t.Parallel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	r := relaytest.Start(t, relay.Config{Source: src, Sink: sk})
	src.Enqueue(relaytest.Messages(3, 0, 3)...)
	relaytest.WaitFor(t, 5*time.Second, "deliveries", func() bool { return src.Stats().Published == 9 })
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Done:
	default:
		t.Fatal("Done not closed after Stop")
	}
	relaytest.CheckOrder(t, sk.Acked())
}
