package postgres_test

import (
	"context"
	"slices"
	"testing"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
)

// RecordPublished deletes (or marks) the free rows it names, skips those a claim holds,
// reports rows already gone, and leaves a row alone whose sequence number now belongs to
// another message.
func TestRecordPublished(t *testing.T) {
	t.Parallel()
	for _, retain := range []bool{false, true} {
		s := newStore(t)
		ctx := context.Background()
		enqueue(t, s, keyed("a", 1), keyed("b", 1), keyed("c", 1))
		all, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10, Retain: retain})
		if err != nil {
			t.Fatal(err)
		}
		recs := slices.Clone(all.Records())
		if err := all.Finish(ctx, outbox.Outcome{}); err != nil { // released unchanged
			t.Fatal(err)
		}
		held, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10, SkipKeys: []string{"a", "c"}, Retain: retain})
		if err != nil {
			t.Fatal(err)
		}
		if got := payloadsOf(held.Records()); !slices.Equal(got, []string{"b1"}) {
			t.Fatalf("claim = %v, want b1", got)
		}
		refs := []dialect.Ref{
			{Seq: recs[0].Seq, ID: recs[0].ID},       // a1: free
			{Seq: recs[1].Seq, ID: recs[1].ID},       // b1: held by the claim
			{Seq: recs[2].Seq, ID: outbox.NewID()},   // c1's seq, another message's id
			{Seq: recs[2].Seq + 100, ID: recs[2].ID}, // gone
		}
		done, err := s.RecordPublished(ctx, refs, retain)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(done)
		if want := []int64{recs[0].Seq, recs[2].Seq, recs[2].Seq + 100}; !slices.Equal(done, want) {
			t.Fatalf("retain %v: done = %v, want %v", retain, done, want)
		}
		if err := held.Finish(ctx, outbox.Outcome{}); err != nil {
			t.Fatal(err)
		}
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Pending != 2 {
			t.Fatalf("retain %v: %d pending, want b1 and c1", retain, st.Pending)
		}
		// Recording again finds a1 gone (deleted or published) and records b1 now.
		done, err = s.RecordPublished(ctx, refs[:2], retain)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(done)
		if want := []int64{recs[0].Seq, recs[1].Seq}; !slices.Equal(done, want) {
			t.Fatalf("retain %v: second done = %v, want %v", retain, done, want)
		}
		rest, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10, Retain: retain})
		if err != nil {
			t.Fatal(err)
		}
		if got := payloadsOf(rest.Records()); !slices.Equal(got, []string{"c1"}) {
			t.Fatalf("retain %v: left = %v, want c1", retain, got)
		}
		if err := rest.Finish(ctx, outbox.Outcome{}); err != nil {
			t.Fatal(err)
		}
	}
}
