package dialecttest

import (
	"testing"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
)

// testCheckpoint: a claim's checkpoint (dialect.Checkpointer) records its published messages
// at once and keeps holding the rest; a claim released afterwards without the rest of its
// outcome (a relay that died) releases only the rest; a Finish given the whole outcome applies
// the checkpointed messages (and their broker duplicates) once.
func testCheckpoint(t *testing.T, s dialect.Store) {
	ctx := ctxT(t)
	mustEnqueue(t, s, msg("a", 1), msg("a", 2), msg("a", 3), msg("b", 4), msg("b", 5))
	c := mustClaim(t, s, dialect.ClaimRequest{})
	cp, ok := c.(dialect.Checkpointer)
	if !ok {
		finish(t, c, outbox.Outcome{})
		t.Skip("the store's claims do not implement dialect.Checkpointer")
	}
	recs := c.Records() // a1 a2 a3 b4 b5, in id order
	if len(recs) != 5 {
		t.Fatalf("claimed %d messages, want 5", len(recs))
	}
	a1, a2, b4 := recs[0].Seq, recs[1].Seq, recs[3].Seq
	if err := cp.Checkpoint(ctx, outbox.Outcome{Published: []int64{a1, b4}, Duplicates: []int64{b4}}); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	if err := cp.Checkpoint(ctx, outbox.Outcome{Retry: []outbox.Retry{{Seq: a2, Error: "x"}}}); err == nil {
		t.Fatal("Checkpoint of a retry: no error")
	}
	other := mustClaim(t, s, dialect.ClaimRequest{})
	if got := other.Records(); len(got) != 0 {
		t.Fatalf("while the checkpointed claim holds the rest, another claim took %v", seqs(got))
	}
	finish(t, other, outbox.Outcome{})
	st, err := s.Stats(ctx)
	if err != nil || st.Pending != 3 || st.BrokerDuplicates != 1 {
		t.Fatalf("after the checkpoint: Stats = %+v, %v; want 3 pending, 1 broker duplicate", st, err)
	}
	// The relay dies: nothing more of the outcome reaches the store.
	finish(t, c, outbox.Outcome{})

	c = mustClaim(t, s, dialect.ClaimRequest{})
	recs = c.Records()
	if got := payloads(recs); len(got) != 3 || got[0] != `a{"n":2}` || got[1] != `a{"n":3}` || got[2] != `b{"n":5}` {
		t.Fatalf("after the claim was released: claimed %v, want a2 a3 b5", got)
	}
	cp = c.(dialect.Checkpointer)
	a2 = recs[0].Seq
	if err := cp.Checkpoint(ctx, outbox.Outcome{Published: []int64{a2}, Duplicates: []int64{a2}}); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	finish(t, c, outbox.Outcome{Published: seqs(recs), Duplicates: []int64{a2}})
	st, err = s.Stats(ctx)
	if err != nil || st.Pending != 0 || st.BrokerDuplicates != 2 {
		t.Fatalf("after Finish: Stats = %+v, %v; want nothing pending, 2 broker duplicates", st, err)
	}
}
