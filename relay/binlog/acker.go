package binlog

import (
	"context"
	"log/slog"
	"time"

	"github.com/outboxgo/outbox/dialect/mysql"
)

// ackKind is what the database must do before a message counts as done.
type ackKind uint8

const (
	ackDelete ackKind = iota + 1 // delete the acknowledged row
	ackDead                      // write the dead letter (and delete the row unless KeepAcked)
)

type ackOp struct {
	entry  *entry
	kind   ackKind
	reason string
}

// maxAckBatch bounds one round of database writes.
const maxAckBatch = 5000

// queueAck hands op to the acker. Called with mu held.
func (s *Source) queueAck(op ackOp) {
	s.acks = append(s.acks, op)
	select {
	case s.ackWake <- struct{}{}:
	default:
	}
}

// ackLoop applies queued deletes and dead letters in batches, and marks their messages done
// once the database has them. A failed write is retried (the messages stay pending, holding
// the position) until ctx ends.
//
// A row event can reach the source a moment before its transaction is visible to other
// sessions (MariaDB writes the binary log before the storage engine commits). The delete is a
// locking read by primary key: it waits for the inserting transaction and then deletes the
// row, so no row is left behind.
func (s *Source) ackLoop(ctx context.Context) {
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.ackWake:
		}
		for ctx.Err() == nil {
			s.mu.Lock()
			n := min(len(s.acks), maxAckBatch)
			if n == 0 {
				s.mu.Unlock()
				break
			}
			ops := make([]ackOp, n)
			copy(ops, s.acks)
			clear(s.acks[:n])
			s.acks = s.acks[n:]
			s.ackBusy = n
			s.mu.Unlock()

			err := s.apply(ctx, ops)
			s.mu.Lock()
			s.ackBusy = 0
			if err != nil {
				// Put them back in front, unless a new session made them stale.
				keep := make([]ackOp, 0, len(ops)+len(s.acks))
				for _, op := range ops {
					if op.entry.gen == s.gen {
						keep = append(keep, op)
					}
				}
				s.acks = append(keep, s.acks...)
				s.nudge()
				s.mu.Unlock()
				if ctx.Err() != nil {
					return
				}
				failures++
				d := min(5*time.Second, 100*time.Millisecond<<min(failures-1, 6))
				s.logger.Warn("writing acknowledgements to the database failed; retrying",
					slog.Int("messages", len(ops)), slog.Any("error", err), slog.Duration("retry_in", d))
				if sleepCtx(ctx, d) != nil {
					return
				}
				continue
			}
			failures = 0
			for _, op := range ops {
				s.done(op.entry)
			}
			s.mu.Unlock()
		}
	}
}

// apply writes one batch of acknowledgements: deletes of acknowledged rows (idempotent, so
// first: if what follows fails, the whole batch is simply applied again), then dead letters.
func (s *Source) apply(ctx context.Context, ops []ackOp) error {
	var (
		del  []int64
		dead []mysql.HeldDead
	)
	for _, op := range ops {
		switch op.kind {
		case ackDelete:
			del = append(del, op.entry.rec.Seq)
		case ackDead:
			dead = append(dead, mysql.HeldDead{Record: op.entry.rec, Error: op.reason})
		}
	}
	if len(del) > 0 {
		if _, err := s.store.DeleteRows(ctx, del); err != nil {
			return err
		}
	}
	if len(dead) > 0 {
		if err := s.store.WriteDeadLetters(ctx, dead, !s.cfg.KeepAcked); err != nil {
			return err
		}
	}
	return nil
}
