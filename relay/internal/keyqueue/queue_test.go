package keyqueue

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay/relaytest"
)

// newQueue returns a queue of transactions whose position is an int, for one worker.
func newQueue(t *testing.T, deleteAcked bool) (*Queue[int], *sync.Mutex) {
	t.Helper()
	mu := &sync.Mutex{}
	q := New[int](Config{BatchSize: 100, BatchLinger: -1, Workers: 1, MaxInFlight: 100, MaxInFlightBytes: 1 << 20,
		DeleteAcked: deleteAcked, Logger: slog.New(slog.DiscardHandler)}, mu)
	return q, mu
}

func rec(key string, seq int64) outbox.Record {
	return outbox.Record{Message: outbox.Message{Topic: "t", Key: key}, Seq: seq}
}

// TestConfirmPassesDonePrefix: Confirm passes the complete transactions in log order up to
// the first with a message not done, whatever the order the messages finish in.
func TestConfirmPassesDonePrefix(t *testing.T) {
	q, mu := newQueue(t, false)
	var passed []int
	confirm := func() {
		mu.Lock()
		defer mu.Unlock()
		q.Confirm(func(end *int) { passed = append(passed, *end) })
	}
	mu.Lock()
	q.Add(q.Begin(10), rec("a", 1))
	q.End()
	q.Add(q.Begin(20), rec("b", 2))
	q.End()
	q.Append(25) // a position marker
	q.Add(q.Begin(30), rec("c", 3))
	mu.Unlock()

	b := relaytest.NextBatch(t, q, time.Second)
	if got := relaytest.Seqs(b); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("batch %v", got)
	}
	// 2 is done, 1 goes back: nothing passes.
	if err := b.Finish(context.Background(), outbox.Outcome{Published: []int64{2, 3}}); err != nil {
		t.Fatal(err)
	}
	confirm()
	if len(passed) != 0 {
		t.Fatalf("passed %v with the first transaction unfinished", passed)
	}
	b = relaytest.NextBatch(t, q, time.Second)
	if err := b.Finish(context.Background(), relaytest.AllPublished(b)); err != nil {
		t.Fatal(err)
	}
	confirm()
	// The open transaction (30) holds its place although its message is done.
	if !slices.Equal(passed, []int{10, 20, 25}) || q.Unconfirmed() != 1 {
		t.Fatalf("passed %v, %d unconfirmed; want 10 20 25 and the open one", passed, q.Unconfirmed())
	}
}

// TestRetriedKeysComeBackWhenDue: retried keys come back in the order their delays end, each
// with its attempts counted, and a key's later message waits behind its retried one.
func TestRetriedKeysComeBackWhenDue(t *testing.T) {
	q, mu := newQueue(t, false)
	mu.Lock()
	tx := q.Begin(1)
	for i, k := range []string{"a", "b", "c", "a"} {
		q.Add(tx, rec(k, int64(i+1)))
	}
	q.End()
	mu.Unlock()
	b := relaytest.NextBatch(t, q, time.Second)
	err := b.Finish(context.Background(), outbox.Outcome{Retry: []outbox.Retry{
		{Seq: 1, Delay: 90 * time.Millisecond}, {Seq: 2, Delay: 30 * time.Millisecond}, {Seq: 3, Delay: 60 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	var order []int64
	for range 3 {
		b := relaytest.NextBatch(t, q, time.Second)
		order = append(order, relaytest.Seqs(b)...)
		for _, r := range b.Records() {
			if r.Attempts != 1 && r.Seq != 4 {
				t.Fatalf("message %d with attempts %d", r.Seq, r.Attempts)
			}
		}
		if err := b.Finish(context.Background(), relaytest.AllPublished(b)); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(order, []int64{2, 3, 1, 4}) {
		t.Fatalf("came back in order %v, want 2 3 1 4", order)
	}
}

// TestAcker: acknowledgements are applied in batches; a failed round is applied again, those
// returned for later once more; their messages are done only then, and Drain sees the queue
// idle.
func TestAcker(t *testing.T) {
	q, mu := newQueue(t, true)
	var (
		rounds [][]AckKind
		failed bool
	)
	apply := func(_ context.Context, acks []Ack[int]) ([]Ack[int], error) {
		var kinds []AckKind
		for _, a := range acks {
			kinds = append(kinds, a.Kind)
		}
		rounds = append(rounds, kinds)
		switch {
		case !failed:
			failed = true
			return nil, errors.New("database down")
		case len(rounds) == 2:
			return acks[:1], nil // the first row is not visible yet
		}
		return nil, nil
	}
	mu.Lock()
	tx := q.Begin(1)
	q.Add(tx, rec("a", 1))
	q.Reject(tx, rec("b", 2), "undecodable")
	q.End()
	mu.Unlock()
	b := relaytest.NextBatch(t, q, time.Second)
	if err := b.Finish(context.Background(), outbox.Outcome{Published: []int64{1}}); err != nil {
		t.Fatal(err)
	}
	defer q.StartAcker(context.Background(), apply)()
	abort := make(chan struct{})
	if err := q.Drain(abort, nil, 10*time.Second, time.Second, func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if st := q.Stats(); st.Pending != 0 || !q.Idle() {
		t.Fatalf("stats %+v after the drain", st)
	}
	if len(rounds) != 3 || len(rounds[2]) != 1 || !slices.Equal(rounds[1], rounds[0]) {
		t.Fatalf("rounds %v: want a failed one, the same again, then the one left for later", rounds)
	}
}

// TestCheckpointConfirmsBeforeFinish: a checkpoint hands the published messages on at once,
// so the position passes their transactions while the rest of the batch is out; Finish with
// the whole outcome does not count them twice, and the batch keeps its keys until then.
func TestCheckpointConfirmsBeforeFinish(t *testing.T) {
	q, mu := newQueue(t, false)
	var passed []int
	confirm := func() {
		mu.Lock()
		defer mu.Unlock()
		q.Confirm(func(end *int) { passed = append(passed, *end) })
	}
	mu.Lock()
	q.Add(q.Begin(10), rec("a", 1))
	q.End()
	q.Add(q.Begin(20), rec("a", 2))
	q.End()
	mu.Unlock()
	b := relaytest.NextBatch(t, q, time.Second)
	cp, ok := b.(interface {
		Checkpoint(context.Context, outbox.Outcome) error
	})
	if !ok {
		t.Fatal("the batch does not checkpoint")
	}
	if err := cp.Checkpoint(context.Background(), outbox.Outcome{Published: []int64{1}}); err != nil {
		t.Fatal(err)
	}
	if err := cp.Checkpoint(context.Background(), outbox.Outcome{Published: []int64{1}}); err == nil {
		t.Fatal("a message checkpointed twice: no error")
	}
	confirm()
	if !slices.Equal(passed, []int{10}) {
		t.Fatalf("after the checkpoint passed %v, want 10", passed)
	}
	if err := b.Finish(context.Background(), relaytest.AllPublished(b)); err != nil {
		t.Fatal(err)
	}
	confirm()
	mu.Lock()
	st := q.Stats()
	mu.Unlock()
	if !slices.Equal(passed, []int{10, 20}) || st.Pending != 0 {
		t.Fatalf("after Finish passed %v with %d pending, want 10 20 and none", passed, st.Pending)
	}
}
