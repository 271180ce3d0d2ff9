package dialecttest

import (
	"slices"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
)

// testHeld: a dialect.HeldWriter deletes rows by id (a missing row is no error), counts broker
// duplicates, and writes dead letters from the records it is given, deleting their rows (at
// once, or through the rows it returns for a later DeleteHeld) only when asked.
func testHeld(t *testing.T, s dialect.Store) {
	h, ok := s.(dialect.HeldWriter)
	if !ok {
		t.Skipf("%T is not a dialect.HeldWriter", s)
	}
	ctx := ctxT(t)
	mustEnqueue(t, s, msg("a", 1), msg("b", 2), msg("c", 3))
	// The rows' ids, as a log source reads them.
	c := mustClaim(t, s, dialect.ClaimRequest{})
	recs := slices.Clone(c.Records())
	finish(t, c, outbox.Outcome{})
	if len(recs) != 3 {
		t.Fatalf("claimed %d records, want 3", len(recs))
	}
	stats := func() dialect.Stats {
		t.Helper()
		st, err := s.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	later, err := h.DeleteHeld(ctx, []dialect.HeldRow{{Seq: recs[0].Seq}, {Seq: recs[0].Seq + 1_000_000}}, 2)
	if err != nil || len(later) != 0 {
		t.Fatalf("DeleteHeld = %v, %v; want nothing later (a missing row is no error)", later, err)
	}
	if st := stats(); st.Pending != 2 || st.BrokerDuplicates != 2 {
		t.Fatalf("after DeleteHeld: Stats = %+v, want 2 pending, 2 broker duplicates", st)
	}
	if later, err := h.DeleteHeld(ctx, nil, 1); err != nil || len(later) != 0 {
		t.Fatalf("DeleteHeld of duplicates only = %v, %v", later, err)
	}
	if st := stats(); st.Pending != 2 || st.BrokerDuplicates != 3 {
		t.Fatalf("after counting a duplicate: Stats = %+v, want 2 pending, 3 broker duplicates", st)
	}

	created := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	b := recs[1]
	b.Payload, b.Headers, b.CreatedAt, b.Attempts = []byte{0, 1, 255}, map[string]string{"h": "v"}, created, 4
	// An unreadable row whose id is unknown: a dead letter, no row to delete.
	unknown := outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: "orders.created"}}
	later, err = h.DeadLetterHeld(ctx, []dialect.HeldDead{{Record: b, Error: "rejected \xff"}, {Record: unknown, Error: "undecodable"}}, true)
	if err != nil {
		t.Fatalf("DeadLetterHeld: %v", err)
	}
	for _, r := range later {
		if r.Seq != b.Seq {
			t.Fatalf("DeadLetterHeld left %+v for later, want at most the row of %d", later, b.Seq)
		}
	}
	if len(later) > 0 {
		if again, err := h.DeleteHeld(ctx, later, 0); err != nil || len(again) != 0 {
			t.Fatalf("DeleteHeld of the dead letters' rows = %v, %v", again, err)
		}
	}
	if st := stats(); st.Pending != 1 || st.DeadLetters != 2 {
		t.Fatalf("after DeadLetterHeld: Stats = %+v, want 1 pending, 2 dead letters", st)
	}
	dls, err := s.DeadLetters(ctx, 0, 10)
	if err != nil || len(dls) != 2 {
		t.Fatalf("DeadLetters = %+v, %v", dls, err)
	}
	d := dls[0]
	if d.Record.Seq != b.Seq || d.Record.ID != b.ID || d.Record.Topic != b.Topic || d.Record.Key != b.Key ||
		d.Record.Type != b.Type || string(d.Record.Payload) != "\x00\x01\xff" || len(d.Record.Headers) != 1 ||
		d.Record.Headers["h"] != "v" || !d.Record.CreatedAt.Equal(created) || d.Record.Attempts != 5 ||
		d.LastError != "rejected \uFFFD" {
		t.Fatalf("dead letter = %+v, want %+v with attempts 5 and a storable error", d, b)
	}
	if u := dls[1]; u.Record.ID != unknown.ID || u.Record.Key != "" || u.Record.Attempts != 1 || u.LastError != "undecodable" {
		t.Fatalf("dead letter of the row without id = %+v", u)
	}

	// Without deleteRows the row stays.
	if later, err := h.DeadLetterHeld(ctx, []dialect.HeldDead{{Record: recs[2], Error: "x"}}, false); err != nil || len(later) != 0 {
		t.Fatalf("DeadLetterHeld without deleting = %v, %v", later, err)
	}
	if st := stats(); st.Pending != 1 || st.DeadLetters != 3 {
		t.Fatalf("after DeadLetterHeld without deleting: Stats = %+v, want 1 pending, 3 dead letters", st)
	}
}
