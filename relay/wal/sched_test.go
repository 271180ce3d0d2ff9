package wal

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/internal/keyqueue"
)

// newTestSource returns a Source that is never connected: for the scheduling logic only.
func newTestSource(t *testing.T, edit func(*Config)) *Source {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	cfg := Config{ConnString: "postgres://nobody@127.0.0.1:1/none", Pool: pool, SlotName: "s", Mode: ModeLogical,
		BatchLinger: -1, Workers: 2}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testBegin opens a transaction in the stream.
func (s *Source) testBegin() *keyqueue.Txn[txnInfo] {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.q.Begin(txnInfo{})
}

func (s *Source) testCommit(end pglogrepl.LSN) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.q.End().Info.end = end
}

func (s *Source) testAdd(key string, seq int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.q.Add(s.q.Open(), outbox.Record{Message: outbox.Message{Topic: "t", Key: key, Payload: []byte(key + ":" + strconv.FormatInt(seq, 10))}, Seq: seq})
}

func TestBatchesNeverShareAKey(t *testing.T) {
	t.Parallel()
	s := newTestSource(t, nil)
	s.testBegin()
	s.testAdd("a", 1)
	s.testAdd("a", 2)
	s.testAdd("b", 3)
	s.testAdd("c", 4)
	s.testCommit(100)

	b1 := sourcetest.Next(t, s, time.Second)
	// Two workers: the first batch takes its share of the three keys, oldest first.
	if got := sourcetest.Seqs(b1); len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("first batch = %v, want [1 2 3]", got)
	}
	b2 := sourcetest.Next(t, s, time.Second)
	if got := sourcetest.Seqs(b2); len(got) != 1 || got[0] != 4 {
		t.Fatalf("second batch = %v, want [4]", got)
	}
	s.testBegin()
	s.testAdd("a", 5)
	s.testCommit(200)
	if b := sourcetest.Next(t, s, 30*time.Millisecond); b != nil {
		t.Fatalf("got %v while key a is held by another batch", sourcetest.Seqs(b))
	}
	if err := b1.Finish(context.Background(), sourcetest.Published(b1)); err != nil {
		t.Fatal(err)
	}
	b3 := sourcetest.Next(t, s, time.Second)
	if got := sourcetest.Seqs(b3); len(got) != 1 || got[0] != 5 {
		t.Fatalf("third batch = %v, want [5]", got)
	}
	// Confirmation waits for the whole transaction: 4 and 5 are still out.
	s.mu.Lock()
	lsn, _ := s.confirmable()
	s.mu.Unlock()
	if lsn != 0 {
		t.Fatalf("confirmed %v with messages of the first transaction unfinished", lsn)
	}
	for _, b := range []relay.Batch{b2, b3} {
		if err := b.Finish(context.Background(), sourcetest.Published(b)); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	lsn, idle := s.confirmable()
	s.mu.Unlock()
	if lsn != 200 || !idle {
		t.Fatalf("confirmable = %v, %v; want 200, idle", lsn, idle)
	}
}

func TestRetryHoldsItsKeyOnly(t *testing.T) {
	t.Parallel()
	s := newTestSource(t, func(c *Config) { c.Workers = 1 })
	s.testBegin()
	s.testAdd("a", 1)
	s.testAdd("a", 2)
	s.testAdd("", 3)
	s.testCommit(100)
	b := sourcetest.Next(t, s, time.Second)
	if got := sourcetest.Seqs(b); len(got) != 3 {
		t.Fatalf("batch = %v", got)
	}
	// 1 fails (2 is released behind it), the keyless 3 fails too.
	err := b.Finish(context.Background(), outbox.Outcome{Retry: []outbox.Retry{
		{Seq: 1, Delay: 100 * time.Millisecond, Error: "x"}, {Seq: 3, Delay: 10 * time.Millisecond, Error: "y"}}})
	if err != nil {
		t.Fatal(err)
	}
	b = sourcetest.Next(t, s, time.Second)
	if got := sourcetest.Seqs(b); len(got) != 1 || got[0] != 3 || b.Records()[0].Attempts != 1 {
		t.Fatalf("batch = %v, want the keyless message alone after its short delay", got)
	}
	start := time.Now()
	b2 := sourcetest.Next(t, s, time.Second)
	if got := sourcetest.Seqs(b2); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("batch = %v, want [1 2] after the delay", got)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("the retried key came back after %v", waited)
	}
	if r := b2.Records(); r[0].Attempts != 1 || r[1].Attempts != 0 {
		t.Fatalf("attempts = %d, %d; want 1, 0", r[0].Attempts, r[1].Attempts)
	}
	if err := b2.Finish(context.Background(), outbox.Outcome{Published: []int64{1, 99}}); err == nil {
		t.Fatal("Finish accepted a message that is not in the batch")
	}
	if st := s.Stats(); st.Pending != 2 || st.InFlightBatches != 1 {
		t.Fatalf("stats = %+v, want 2 pending (2 released, 3 out) and 1 batch", st)
	}
}

func TestPositionMarkers(t *testing.T) {
	t.Parallel()
	s := newTestSource(t, nil)
	s.mu.Lock()
	s.mark(50) // idle: confirmable at once
	lsn, _ := s.confirmable()
	s.mu.Unlock()
	if lsn != 50 {
		t.Fatalf("confirmable = %v, want the keepalive position", lsn)
	}
	s.testBegin()
	s.testAdd("a", 1)
	s.mu.Lock()
	s.mark(70) // mid-transaction: ignored
	s.mu.Unlock()
	s.testCommit(100)
	s.mu.Lock()
	s.mark(150)
	s.mark(160) // coalesced with the previous marker
	n := s.q.Unconfirmed()
	lsn, idle := s.confirmable()
	s.mu.Unlock()
	if n != 2 || lsn != 50 || idle {
		t.Fatalf("queue %d, confirmable %v %v; want 2 entries, 50, busy", n, lsn, idle)
	}
	b := sourcetest.Next(t, s, time.Second)
	if err := b.Finish(context.Background(), sourcetest.Published(b)); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	lsn, idle = s.confirmable()
	s.mu.Unlock()
	if lsn != 160 || !idle {
		t.Fatalf("confirmable = %v %v; want 160, idle", lsn, idle)
	}
}

func TestBackPressureAndStaleBatches(t *testing.T) {
	t.Parallel()
	s := newTestSource(t, func(c *Config) { c.MaxInFlight = 3; c.Workers = 1 })
	s.testBegin()
	s.testAdd("a", 1)
	s.testAdd("b", 2)
	s.mu.Lock()
	over := s.q.Overloaded()
	s.mu.Unlock()
	if over {
		t.Fatal("overloaded below MaxInFlight")
	}
	s.testAdd("c", 3)
	s.mu.Lock()
	over = s.q.Overloaded()
	s.mu.Unlock()
	if !over {
		t.Fatal("not overloaded at MaxInFlight")
	}
	b := sourcetest.Next(t, s, time.Second)
	// The session ends: everything read is forgotten, the batch in flight goes stale but
	// keeps its keys until it finishes.
	s.mu.Lock()
	s.q.Reset()
	s.mu.Unlock()
	s.testBegin()
	s.testAdd("a", 1)
	s.testAdd("d", 4)
	s.testCommit(100)
	b2 := sourcetest.Next(t, s, time.Second)
	if got := sourcetest.Seqs(b2); len(got) != 1 || got[0] != 4 {
		t.Fatalf("batch = %v, want only d while a is held by the stale batch", got)
	}
	if err := b.Finish(context.Background(), sourcetest.Published(b)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Pending != 2 {
		t.Fatalf("pending = %d after a stale finish, want 2 (the new session's)", st.Pending)
	}
	b3 := sourcetest.Next(t, s, time.Second)
	if got := sourcetest.Seqs(b3); len(got) != 1 || got[0] != 1 {
		t.Fatalf("batch = %v, want a again", got)
	}
}

func TestDecodeRow(t *testing.T) {
	t.Parallel()
	rel := testRelation()
	tm := pgtype.NewMap()
	rec, err := rel.decodeRow(testRow("42", "0190f2a4-0000-7000-8000-000000000001", "orders", "k1", "Created",
		`\x00ff`, `{"a": "1", "n": 2}`, "2025-03-04 05:06:07.123456+00", "3"), tm)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2025, 3, 4, 5, 6, 7, 123456000, time.UTC)
	if rec.Seq != 42 || rec.Topic != "orders" || rec.Key != "k1" || rec.Type != "Created" || string(rec.Payload) != "\x00\xff" ||
		rec.Headers["a"] != "1" || rec.Headers["n"] != "2" || !rec.CreatedAt.Equal(want) || rec.Attempts != 3 {
		t.Fatalf("record = %+v", rec)
	}
	cols := testRow("42", "0190f2a4-0000-7000-8000-000000000001", "orders", "", "", `\x`, `{}`, "2025-03-04 05:06:07+00", "0")
	cols[3] = &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeNull}
	rec, err = rel.decodeRow(cols, tm)
	if err != nil || rec.Key != "" || rec.Payload == nil || len(rec.Payload) != 0 || rec.Headers != nil {
		t.Fatalf("record = %+v, %v", rec, err)
	}
	for name, row := range map[string][]*pglogrepl.TupleDataColumn{
		"bad id":      testRow("x", "0190f2a4-0000-7000-8000-000000000001", "t", "", "", `\x`, `{}`, "2025-03-04 05:06:07+00", "0"),
		"bad uuid":    testRow("1", "nope", "t", "", "", `\x`, `{}`, "2025-03-04 05:06:07+00", "0"),
		"bad hex":     testRow("1", "0190f2a4-0000-7000-8000-000000000001", "t", "", "", `\xzz`, `{}`, "2025-03-04 05:06:07+00", "0"),
		"bad headers": testRow("1", "0190f2a4-0000-7000-8000-000000000001", "t", "", "", `\x`, `[1]`, "2025-03-04 05:06:07+00", "0"),
		"short row":   testRow("1")[:1],
	} {
		if _, err := rel.decodeRow(row, tm); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func testRelation() *relation {
	m := &pglogrepl.RelationMessage{Namespace: "s", RelationName: "outbox"}
	for _, name := range []string{"id", "message_id", "topic", "key", "type", "payload", "headers", "created_at", "attempts", "extra"} {
		m.Columns = append(m.Columns, &pglogrepl.RelationMessageColumn{Name: name})
	}
	return newRelation(m, "s", "outbox")
}

func testRow(vals ...string) []*pglogrepl.TupleDataColumn {
	cols := make([]*pglogrepl.TupleDataColumn, 10)
	for i := range cols {
		cols[i] = &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeNull}
		if i < len(vals) {
			cols[i] = &pglogrepl.TupleDataColumn{DataType: pglogrepl.TupleDataTypeText, Data: []byte(vals[i])}
		}
	}
	return cols
}

// FuzzDecodeRow feeds arbitrary column text to the row decoder: it must never panic, and a
// row it accepts has what the relay needs.
func FuzzDecodeRow(f *testing.F) {
	f.Add("42", "0190f2a4-0000-7000-8000-000000000001", "orders", "k", `\x00ff`, `{"a":"1"}`, "2025-03-04 05:06:07.123456+00", "0")
	f.Add("-1", "", "", "", `\001`, `null`, "infinity", "x")
	rel := testRelation()
	tm := pgtype.NewMap()
	f.Fuzz(func(t *testing.T, id, msgID, topic, key, payload, headers, created, attempts string) {
		rec, err := rel.decodeRow(testRow(id, msgID, topic, key, "", payload, headers, created, attempts), tm)
		if err != nil {
			return
		}
		if rec.Topic == "" || rec.Payload == nil {
			t.Fatalf("accepted row without topic or payload: %+v", rec)
		}
	})
}
