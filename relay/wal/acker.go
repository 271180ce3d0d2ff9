package wal

import (
	"context"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/relay/internal/keyqueue"
)

// apply writes one batch of acknowledgements for the queue's acker, through the postgres
// store's dialect.HeldWriter: deletes of acknowledged rows (idempotent, so first: if what
// follows fails, the whole batch is simply applied again) with the count of broker duplicates
// among them (in the deletes' transaction), then dead letters.
// It returns the operations to apply again later: deletes of rows whose transaction is not
// visible yet, and the deletes of the rows of messages just dead-lettered.
func (s *Source) apply(ctx context.Context, ops []ackOp) (later []ackOp, err error) {
	var (
		del, dead []ackOp
		dups      int64
	)
	for _, op := range ops {
		if op.Duplicate && (op.Kind == keyqueue.Delete || op.Kind == keyqueue.CountOnly) {
			dups++
		}
		switch op.Kind {
		case keyqueue.Delete:
			del = append(del, op)
		case keyqueue.Dead:
			dead = append(dead, op)
		}
	}
	if len(del) > 0 || dups > 0 {
		if later, err = s.deleteRows(ctx, del, dups); err != nil {
			return nil, err
		}
	}
	if len(dead) > 0 {
		held := make([]dialect.HeldDead, len(dead))
		for i, op := range dead {
			held[i] = dialect.HeldDead{Record: op.Entry.Record, Error: op.Reason, Txn: op.Entry.Txn.Info.xid}
		}
		rows, err := s.held.DeadLetterHeld(ctx, held, s.cfg.Mode == ModeTable && !s.cfg.KeepAcked)
		if err != nil {
			return nil, err
		}
		for _, op := range opsOf(dead, rows) {
			later = append(later, ackOp{Entry: op.Entry, Kind: keyqueue.Delete})
		}
	}
	return later, nil
}

// deleteRows deletes the rows of del, and adds dups to the broker duplicates counter, in one
// transaction. It returns the rows to try again: rows whose inserting transaction the
// delete's snapshot could not see yet.
func (s *Source) deleteRows(ctx context.Context, del []ackOp, dups int64) ([]ackOp, error) {
	rows := make([]dialect.HeldRow, len(del))
	for i, op := range del {
		rows[i] = rowOf(op)
	}
	later, err := s.held.DeleteHeld(ctx, rows, dups)
	if err != nil {
		return nil, err
	}
	return opsOf(del, later), nil
}

// rowOf is the outbox row of op's message.
func rowOf(op ackOp) dialect.HeldRow {
	return dialect.HeldRow{Seq: op.Entry.Record.Seq, Txn: op.Entry.Txn.Info.xid}
}

// opsOf returns the operations of ops whose row is one of rows.
func opsOf(ops []ackOp, rows []dialect.HeldRow) []ackOp {
	if len(rows) == 0 {
		return nil
	}
	want := make(map[dialect.HeldRow]bool, len(rows))
	for _, r := range rows {
		want[r] = true
	}
	var out []ackOp
	for _, op := range ops {
		if want[rowOf(op)] {
			out = append(out, op)
		}
	}
	return out
}
