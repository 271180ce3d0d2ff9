package binlog

import (
	"context"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/relay/internal/keyqueue"
)

// apply writes one batch of acknowledgements for the queue's acker, through the mysql store's
// dialect.HeldWriter: deletes of acknowledged rows (idempotent, so first: if what follows
// fails, the whole batch is simply applied again) with the count of broker duplicates among
// them, then dead letters. Nothing is left for later.
//
// A row event can reach the source a moment before its transaction is visible to other
// sessions (MariaDB writes the binary log before the storage engine commits). The delete is a
// locking read by primary key: it waits for the inserting transaction and then deletes the
// row, so no row is left behind.
func (s *Source) apply(ctx context.Context, ops []ackOp) (later []ackOp, err error) {
	var (
		del  []dialect.HeldRow
		dead []dialect.HeldDead
		dups int64
	)
	for _, op := range ops {
		if op.Duplicate && (op.Kind == keyqueue.Delete || op.Kind == keyqueue.CountOnly) {
			dups++
		}
		switch op.Kind {
		case keyqueue.Delete:
			del = append(del, dialect.HeldRow{Seq: op.Entry.Record.Seq})
		case keyqueue.Dead:
			dead = append(dead, dialect.HeldDead{Record: op.Entry.Record, Error: op.Reason})
		}
	}
	if len(del) > 0 || dups > 0 {
		if _, err := s.held.DeleteHeld(ctx, del, dups); err != nil {
			return nil, err
		}
	}
	if len(dead) > 0 {
		if _, err := s.held.DeadLetterHeld(ctx, dead, !s.cfg.KeepAcked); err != nil {
			return nil, err
		}
	}
	return nil, nil
}
