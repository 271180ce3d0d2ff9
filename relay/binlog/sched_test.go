package binlog

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
)

// newTestSource returns a Source that is never connected: for the bookkeeping only.
func newTestSource(t *testing.T) *Source {
	t.Helper()
	db, err := sql.Open("mysql", "nobody@tcp(127.0.0.1:1)/none")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	s, err := New(Config{DSN: "nobody@tcp(127.0.0.1:1)/", DB: db, KeepAcked: true})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func maria(domain, server uint32, seq uint64) gtidOf {
	return gtidOf{maria: mysql.MariadbGTID{DomainID: domain, ServerID: server, SequenceNumber: seq}}
}

// TestConfirm: the position moves past a prefix of done transactions only; confirming outbox
// messages makes a save due at once, other traffic only at the heartbeat, and the source's own
// position writes not at all (or an idle source would save forever, each save a transaction).
func TestConfirm(t *testing.T) {
	s := newTestSource(t)
	var err error
	if s.gtids, err = newTracker(mysql.MariaDBFlavor, "0-1-5"); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.q.Append(txnInfo{file: "b.1", pos: 100, gtid: maria(0, 1, 6), self: true})
	s.confirm()
	if p := s.confirmed(); p.String() != "0-1-6 (b.1:100)" || s.urgent || s.moved {
		t.Fatalf("after the source's own write: %v, urgent %v, moved %v", p, s.urgent, s.moved)
	}
	withMsg := s.q.Begin(txnInfo{gtid: maria(0, 1, 7), outbox: true})
	s.q.Add(withMsg, outbox.Record{Message: outbox.Message{Topic: "t"}, Seq: 1})
	s.q.End()
	withMsg.Info.file, withMsg.Info.pos = "b.1", 200
	s.q.Append(txnInfo{file: "b.1", pos: 300, gtid: maria(1, 2, 3), foreign: true}) // another table's
	s.q.Begin(txnInfo{gtid: maria(0, 1, 8), outbox: true})                          // still open
	s.confirm()
	if p := s.confirmed(); p.String() != "0-1-6 (b.1:100)" {
		t.Fatalf("moved past a pending message: %v", p)
	}
	s.mu.Unlock()
	// The message is done (published: with KeepAcked that is all it takes).
	b, err := s.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Finish(context.Background(), outbox.Outcome{Published: []int64{1}}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.confirm()
	if p := s.confirmed(); p.String() != "0-1-7,1-2-3 (b.1:300)" || !s.urgent || !s.moved {
		t.Fatalf("after the message was done: %v, urgent %v, moved %v", p, s.urgent, s.moved)
	}
	if n := s.q.Unconfirmed(); n != 1 {
		t.Fatalf("%d transactions queued, want the open one", n)
	}
	// A GTID set to start from names one server per domain, as @slave_connect_state takes it,
	// even after the domain's server changed.
	s.gtids.add(maria(0, 9, 8))
	if got := s.gtids.startSet().String(); got != "0-9-8,1-2-3" {
		t.Fatalf("start set %q", got)
	}
}

// TestTracker: saved GTID positions parse back; MySQL positions track a set, or nothing when
// the server had no GTIDs.
func TestTracker(t *testing.T) {
	g, err := newTracker(mysql.MariaDBFlavor, "1-3-10, 0-1-7")
	if err != nil || g.String() != "0-1-7,1-3-10" {
		t.Fatalf("tracker %v, %v", g, err)
	}
	if _, err := newTracker(mysql.MariaDBFlavor, "0-1"); err == nil {
		t.Fatal("a bad GTID parsed")
	}
	empty, err := newTracker(mysql.MariaDBFlavor, "")
	if err != nil || empty.String() != "" || empty.startSet() != nil {
		t.Fatalf("empty tracker %v, %v", empty, err)
	}
	empty.add(maria(0, 1, 1))
	if empty.String() != "0-1-1" {
		t.Fatalf("after a first transaction: %q", empty.String())
	}
	off, err := newTracker(mysql.MySQLFlavor, "")
	if err != nil {
		t.Fatal(err)
	}
	off.add(gtidOf{sid: uuid.New(), gno: 3})
	if off.String() != "" || off.startSet() != nil {
		t.Fatalf("untracked MySQL position %q", off.String())
	}
	sid := uuid.MustParse("3e11fa47-71ca-11e1-9e33-c80aa9429562")
	my, err := newTracker(mysql.MySQLFlavor, sid.String()+":1-5")
	if err != nil {
		t.Fatal(err)
	}
	my.add(gtidOf{sid: sid, gno: 6})
	if got := my.String(); got != sid.String()+":1-6" {
		t.Fatalf("MySQL set %q", got)
	}
}

// TestDecodeRow: go-mysql's value types map to the record fields.
func TestDecodeRow(t *testing.T) {
	l := newLayout([]string{"id", "message_id", "topic", "key", "type", "payload", "headers", "created_at", "available_at", "attempts", "extra"})
	id := uuid.New()
	created := time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)
	commit := time.Now().UTC()
	rec, err := l.decodeRow([]any{int64(7), id.String(), "t", nil, "ty", []byte("p"), []byte(`{"a":"b"}`), created, created, int32(2), "x"}, commit)
	if err != nil || rec.Seq != 7 || rec.ID != id || rec.Key != "" || rec.Type != "ty" || string(rec.Payload) != "p" ||
		rec.Headers["a"] != "b" || !rec.CreatedAt.Equal(created) || rec.Attempts != 2 {
		t.Fatalf("record %+v, %v", rec, err)
	}
	// MySQL's native JSON arrives as a string; a date may arrive as a string.
	rec, err = l.decodeRow([]any{uint64(8), []byte(id.String()), "t", "k", "", "", `{}`, "2024-01-02 03:04:05.000006", nil, int32(0), nil}, commit)
	if err != nil || rec.Seq != 8 || rec.Key != "k" || rec.Payload == nil || rec.Headers != nil || !rec.CreatedAt.Equal(created) {
		t.Fatalf("record %+v, %v", rec, err)
	}
	for _, bad := range [][]any{
		{"x", id.String(), "t", nil, "", "", "{}", created, created, int32(0), nil},       // id
		{int64(1), "nope", "t", nil, "", "", "{}", created, created, int32(0), nil},       // message_id
		{int64(1), id.String(), "", nil, "", "", "{}", created, created, int32(0), nil},   // topic
		{int64(1), id.String(), "t", nil, "", "", "[1]", created, created, int32(0), nil}, // headers
		// A zero date (a session without strict mode) is no time.
		{int64(1), id.String(), "t", nil, "", "", "{}", "0000-00-00 00:00:00.000000", created, int32(0), nil},
		{int64(1), id.String(), "t", nil, "", "", "{}", created, created, int32(-1), nil},   // attempts
		{int64(1), id.String(), "t", "\xff", "", "", "{}", created, created, int32(0), nil}, // key not UTF-8
		{int64(1)}, // column count
	} {
		if _, err := l.decodeRow(bad, commit); err == nil {
			t.Errorf("%v decoded", bad)
		}
	}
	if miss := newLayout([]string{"id", "message_id", "topic"}).missing(); miss != "payload" {
		t.Fatalf("missing = %q", miss)
	}
}

// FuzzDecodeRow: whatever the values (rows written by hand, another server's types), decoding
// never panics, and a row it accepts has what a message needs.
func FuzzDecodeRow(f *testing.F) {
	f.Add(int64(1), "0191c3a0-6e1c-7cc2-9a4e-2f4f8e5f4a01", "topic", "key", []byte("payload"), []byte(`{"a":"b"}`), "2024-01-02 03:04:05.000006", true)
	f.Add(int64(-1), "", "", "", []byte{}, []byte(`{"a":1,"b":[null]}`), "", false)
	f.Fuzz(func(t *testing.T, id int64, msgID, topic, key string, payload, headers []byte, created string, nullKey bool) {
		l := newLayout([]string{"id", "message_id", "topic", "key", "payload", "headers", "created_at"})
		var k any = key
		if nullKey {
			k = nil
		}
		rec, err := l.decodeRow([]any{id, msgID, topic, k, payload, headers, created}, time.Unix(0, 0))
		if err != nil {
			return
		}
		if rec.Topic != topic || rec.Payload == nil || rec.Seq != id || rec.CreatedAt.IsZero() || nullKey && rec.Key != "" {
			t.Fatalf("accepted %+v", rec)
		}
	})
}
