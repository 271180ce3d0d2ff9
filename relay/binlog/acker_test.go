package binlog

import (
	"context"
	"testing"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/internal/testutil/mysqltest"
	"github.com/outboxgo/outbox/relay/internal/keyqueue"
)

// TestApplyCountsBrokerDuplicates: duplicate acknowledgements (a delete's and a count-only
// one's) reach the store's broker duplicates counter; other acknowledgements do not.
func TestApplyCountsBrokerDuplicates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _, _ := mysqltest.Database(t)
	store, err := mysql.New(ctx, mysql.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{DSN: mysqltest.DSN(), DB: db})
	if err != nil {
		t.Fatal(err)
	}
	entry := func(seq int64) *keyqueue.Entry[txnInfo] {
		return &keyqueue.Entry[txnInfo]{Record: outbox.Record{Seq: seq}}
	}
	ops := []ackOp{
		{Entry: entry(1), Kind: keyqueue.Delete, Duplicate: true},
		{Entry: entry(2), Kind: keyqueue.Delete},
		{Entry: entry(3), Kind: keyqueue.CountOnly, Duplicate: true},
	}
	if _, err := s.apply(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if _, err := s.apply(ctx, ops[2:]); err != nil {
		t.Fatal(err)
	}
	st, err := store.Stats(ctx)
	if err != nil || st.BrokerDuplicates != 3 {
		t.Fatalf("Stats = %+v, %v; want 3 broker duplicates", st, err)
	}
}
