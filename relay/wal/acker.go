package wal

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox/internal/sqlident"
)

// ackKind is what the database must do before a message counts as done.
type ackKind uint8

const (
	ackDelete ackKind = iota + 1 // table mode: delete the acknowledged row
	ackDead                      // write the dead letter (and delete the row in table mode)
)

type ackOp struct {
	entry  *entry
	kind   ackKind
	reason string
}

// maxAckBatch bounds one round of database writes.
const maxAckBatch = 5000

type queries struct {
	del, dead string
}

func buildQueries(t sqlident.Table) queries {
	return queries{
		del: `DELETE FROM ` + t.Quoted() + ` WHERE id = ANY($1::bigint[])`,
		dead: `INSERT INTO ` + t.Derived("_dead").Quoted() +
			` (original_id, message_id, topic, key, type, payload, headers, created_at, attempts, last_error, failed_at)
SELECT o, m::uuid, tp, k, ty, p, h::jsonb, c, a, e, clock_timestamp()
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::text[], $8::timestamptz[], $9::int[], $10::text[])
  WITH ORDINALITY AS u(o, m, tp, k, ty, p, h, c, a, e, ord) ORDER BY ord`,
	}
}

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
// the slot's position) until ctx ends.
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

// apply writes one batch of acknowledgements: deletes of published rows, and dead letters
// (with the delete of their rows) in one transaction.
func (s *Source) apply(ctx context.Context, ops []ackOp) error {
	deleteRows := s.cfg.Mode == ModeTable && !s.cfg.KeepAcked
	var ids []int64
	var dead []ackOp
	for _, op := range ops {
		switch op.kind {
		case ackDelete:
			ids = append(ids, op.entry.rec.Seq)
		case ackDead:
			dead = append(dead, op)
			if deleteRows && op.entry.rec.Seq > 0 {
				ids = append(ids, op.entry.rec.Seq)
			}
		}
	}
	if len(dead) == 0 {
		if _, err := s.cfg.Pool.Exec(ctx, s.q.del, ids); err != nil {
			return fmt.Errorf("deleting %d acknowledged rows: %w", len(ids), err)
		}
		return nil
	}
	n := len(dead)
	var (
		orig     = make([]int64, n)
		msgIDs   = make([]string, n)
		topics   = make([]string, n)
		keys     = make([]*string, n)
		types    = make([]string, n)
		payloads = make([][]byte, n)
		headers  = make([]string, n)
		created  = make([]time.Time, n)
		attempts = make([]int32, n)
		errs     = make([]string, n)
	)
	for i, op := range dead {
		r := &op.entry.rec
		orig[i] = r.Seq
		msgIDs[i] = r.ID.String()
		topics[i] = storable(r.Topic)
		if r.Key != "" {
			k := storable(r.Key)
			keys[i] = &k
		}
		types[i] = storable(r.Type)
		payloads[i] = r.Payload
		if payloads[i] == nil {
			payloads[i] = []byte{}
		}
		headers[i] = headersJSON(r.Headers)
		created[i] = r.CreatedAt
		if created[i].IsZero() {
			created[i] = time.Now()
		}
		// The failed attempt counts, as in the store's dead letters.
		attempts[i] = int32(min(r.Attempts+1, 1<<30))
		errs[i] = storable(op.reason)
	}
	err := pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(s.q.dead, orig, msgIDs, topics, keys, types, payloads, headers, created, attempts, errs)
		if len(ids) > 0 {
			b.Queue(s.q.del, ids)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("writing %d dead letters: %w", n, err)
	}
	return nil
}
