package mysql_test

import (
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/internal/testutil/mysqltest"
)

// TestHeldMessages: the dialect.HeldWriter of sources that hold messages in memory
// (relay/binlog) writes dead letters from the records they hold and deletes rows by id.
func TestHeldMessages(t *testing.T) {
	t.Parallel()
	db, _, _ := mysqltest.Database(t)
	ctx := ctxT(t)
	s, err := mysql.New(ctx, mysql.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Enqueue(ctx, msg("a", 1), msg("b", 2), msg("", 3)); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	rows, err := db.QueryContext(ctx, "SELECT id FROM outbox ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil || len(ids) != 3 {
		t.Fatalf("ids %v, %v", ids, err)
	}
	count := func() int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM outbox").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	later, err := s.DeleteHeld(ctx, []dialect.HeldRow{{Seq: ids[0]}, {Seq: ids[0] + 1000}}, 0)
	if err != nil || len(later) != 0 {
		t.Fatalf("DeleteHeld = %v, %v; want nothing later (a missing row is no error)", later, err)
	}
	if n := count(); n != 2 {
		t.Fatalf("%d rows left after DeleteHeld, want 2 (1 deleted)", n)
	}
	created := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	held := outbox.Record{
		Message: outbox.Message{ID: outbox.NewID(), Topic: "t", Key: "b", Type: "ty", Payload: []byte{0, 1, 255},
			Headers: map[string]string{"h": "v"}},
		Seq: ids[1], CreatedAt: created, Attempts: 4,
	}
	if later, err := s.DeadLetterHeld(ctx, []dialect.HeldDead{{Record: held, Error: "rejected \xff"}}, true); err != nil || len(later) != 0 {
		t.Fatalf("DeadLetterHeld = %v, %v; want its row deleted, nothing later", later, err)
	}
	dls, err := s.DeadLetters(ctx, 0, 10)
	if err != nil || len(dls) != 1 {
		t.Fatalf("DeadLetters = %+v, %v", dls, err)
	}
	d := dls[0]
	if d.Record.Seq != held.Seq || d.Record.ID != held.ID || d.Record.Key != "b" || d.Record.Type != "ty" ||
		string(d.Record.Payload) != "\x00\x01\xff" || d.Record.Headers["h"] != "v" || !d.Record.CreatedAt.Equal(created) ||
		d.Record.Attempts != 5 || d.LastError != "rejected \uFFFD" {
		t.Fatalf("dead letter = %+v", d)
	}
	// Without deleting: the row stays.
	held.Seq, held.Key = ids[2], ""
	if later, err := s.DeadLetterHeld(ctx, []dialect.HeldDead{{Record: held, Error: "x"}}, false); err != nil || len(later) != 0 {
		t.Fatalf("DeadLetterHeld = %v, %v", later, err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d rows left; want the one not deleted", n)
	}
}
