package dialecttest

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
)

// testBrokerDuplicates: Outcome.Duplicates are counted, persistently, in Stats.BrokerDuplicates.
func testBrokerDuplicates(t *testing.T, s dialect.Store) {
	ctx := ctxT(t)
	mustEnqueue(t, s, msg("a", 1), msg("b", 1), msg("c", 1))
	c := mustClaim(t, s, dialect.ClaimRequest{})
	recs := c.Records()
	finish(t, c, outbox.Outcome{Published: seqs(recs[:2]), Duplicates: seqs(recs[:2])})
	c = mustClaim(t, s, dialect.ClaimRequest{})
	finish(t, c, outbox.Outcome{Published: seqs(c.Records()), Duplicates: seqs(c.Records())})
	st, err := s.Stats(ctx)
	if err != nil || st.BrokerDuplicates != 3 || st.Pending != 0 {
		t.Fatalf("Stats = %+v, %v; want 3 broker duplicates, nothing pending", st, err)
	}
}

// testNotAttempted: a retry that was not attempted (its sink unavailable) keeps attempts and
// writes the delay and the error.
func testNotAttempted(t *testing.T, s dialect.Store) {
	ctx := ctxT(t)
	mustEnqueue(t, s, msg("a", 1), msg("b", 1))
	c := mustClaim(t, s, dialect.ClaimRequest{})
	a, b := c.Records()[0].Seq, c.Records()[1].Seq
	finish(t, c, outbox.Outcome{Retry: []outbox.Retry{
		{Seq: a, Error: "sink down", NotAttempted: true},
		{Seq: b, Delay: time.Hour, Error: "sink down", NotAttempted: true},
	}})
	st, err := s.Stats(ctx)
	if err != nil || st.Pending != 2 || st.Ready != 1 || st.Retrying != 0 {
		t.Fatalf("Stats = %+v, %v; want 2 pending, 1 ready (b waits an hour), none retrying", st, err)
	}
	if len(st.Topics) != 1 || st.Topics[0] != (dialect.TopicErrors{Topic: "orders.created", Failing: 2, LastError: "sink down"}) {
		t.Fatalf("Stats.Topics = %+v, want the two waiting messages", st.Topics)
	}
	for _, want := range []int{0, 1} {
		c = mustClaim(t, s, dialect.ClaimRequest{})
		if r := c.Records(); len(r) != 1 || r[0].Seq != a || r[0].Attempts != want {
			t.Fatalf("claimed %+v, want only a with attempts %d", r, want)
		}
		finish(t, c, outbox.Outcome{Retry: []outbox.Retry{{Seq: a, Error: "attempted"}}})
	}
}

// testTopicErrors: Stats.Topics counts each topic's failing messages and gives the error
// written last (not the one of the latest id or the latest available_at).
func testTopicErrors(t *testing.T, s dialect.Store) {
	ctx := ctxT(t)
	tm := func(topic, key string) outbox.Message {
		m := msg(key, 1)
		m.Topic = topic
		return m
	}
	mustEnqueue(t, s, tm("t1", "x1"), tm("t1", "x2"), tm("t2", "y"), tm("t3", "z"))
	c := mustClaim(t, s, dialect.ClaimRequest{})
	recs := c.Records()
	x1, x2, y := recs[0].Seq, recs[1].Seq, recs[2].Seq
	finish(t, c, outbox.Outcome{
		Retry:     []outbox.Retry{{Seq: x2, Delay: 2 * time.Hour, Error: "early"}, {Seq: y, Delay: time.Hour, Error: "y failed"}},
		Published: []int64{recs[3].Seq},
	})
	time.Sleep(5 * time.Millisecond) // a later error, whatever the clock's resolution
	c = mustClaim(t, s, dialect.ClaimRequest{})
	if got := seqs(c.Records()); !slices.Equal(got, []int64{x1}) {
		t.Fatalf("second claim = %v, want x1 only", got)
	}
	finish(t, c, outbox.Outcome{Retry: []outbox.Retry{{Seq: x1, Delay: time.Millisecond, Error: "late"}}})
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	want := []dialect.TopicErrors{{Topic: "t1", Failing: 2, LastError: "late"}, {Topic: "t2", Failing: 1, LastError: "y failed"}}
	if !slices.Equal(st.Topics, want) {
		t.Fatalf("Stats.Topics = %+v, want %+v", st.Topics, want)
	}
}

// testCanonicalMessageID: message_id is stored in one form whoever writes it, so that the
// unique index catches a UUID reused in another spelling (upper case, no hyphens).
func testCanonicalMessageID(t *testing.T, s dialect.Store, raw Raw) {
	ctx := ctxT(t)
	insert := func(id string) error {
		return raw.Exec(ctx, s, strings.ReplaceAll(raw.InsertID, "{id}", id))
	}
	m := msg("a", 1)
	m.ID = uuid.New()
	mustEnqueue(t, s, m)
	if err := insert(strings.ToUpper(m.ID.String())); err == nil {
		t.Fatal("the upper-case spelling of an enqueued id was inserted")
	}
	other := uuid.New()
	if err := insert(strings.ToUpper(other.String())); err != nil {
		t.Fatalf("inserting an upper-case id: %v", err)
	}
	if err := insert(other.String()); err == nil {
		t.Fatal("the lower-case spelling of an id inserted in upper case was inserted")
	}
	third := uuid.New()
	if err := insert(strings.ReplaceAll(third.String(), "-", "")); err != nil {
		t.Fatalf("inserting an id without hyphens: %v", err)
	}
	dup := msg("a", 2)
	dup.ID = third
	if err := s.Enqueue(ctx, dup); err == nil {
		t.Fatal("an id inserted without hyphens was enqueued again")
	}
	c := mustClaim(t, s, dialect.ClaimRequest{})
	ids := make([]uuid.UUID, 0, 3)
	for _, r := range c.Records() {
		ids = append(ids, r.ID)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	if !slices.Equal(ids, []uuid.UUID{m.ID, other, third}) {
		t.Fatalf("claimed ids %v, want %v %v %v", ids, m.ID, other, third)
	}
}
