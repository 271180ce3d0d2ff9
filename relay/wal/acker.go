package wal

import (
	"context"
	"fmt"
	"log/slog"
	"time"

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
		// The walsender may stream a transaction a moment before it is visible to other
		// sessions (it becomes visible after its commit record is flushed, and after the
		// synchronous standbys confirmed it). So the delete reports which of the transactions
		// (32-bit xids, widened with the epoch of the snapshot) its own snapshot could not see
		// yet: their rows are deleted in a later round. A row missing although its
		// transaction is visible was deleted already (after a restart, or by the producer).
		del: `WITH d AS (DELETE FROM ` + t.Quoted() + ` WHERE id = ANY($1::bigint[]) RETURNING id),
snap AS (SELECT pg_current_snapshot() AS s, pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax),
x AS (SELECT u.x, ((snap.xmax >> 32) << 32) | u.x AS full, snap.s, snap.xmax FROM snap, unnest($2::bigint[]) AS u(x))
SELECT coalesce((SELECT array_agg(id) FROM d), '{}'::bigint[]),
  coalesce((SELECT array_agg(x.x) FROM x WHERE NOT pg_visible_in_snapshot(
    (CASE WHEN x.full > x.xmax THEN x.full - 4294967296 ELSE x.full END)::text::xid8, x.s)), '{}'::bigint[])`,
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
	failures, waits := 0, 0
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

			later, err := s.apply(ctx, ops)
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
			again := make(map[*entry]bool, len(later))
			for _, op := range later {
				again[op.entry] = true
				if op.entry.gen == s.gen {
					s.acks = append(s.acks, op)
				}
			}
			for _, op := range ops {
				if !again[op.entry] {
					s.done(op.entry)
				}
			}
			s.mu.Unlock()
			if len(later) < len(ops) {
				waits = 0
				continue
			}
			// Only rows of transactions not visible yet: give them a moment.
			waits++
			if sleepCtx(ctx, min(time.Second, time.Millisecond<<min(waits, 10))) != nil {
				return
			}
		}
	}
}

// apply writes one batch of acknowledgements: deletes of acknowledged rows (idempotent, so
// first: if what follows fails, the whole batch is simply applied again), then dead letters.
// It returns the operations to apply again later: deletes of rows whose transaction is not
// visible yet, and the deletes of the rows of messages just dead-lettered.
func (s *Source) apply(ctx context.Context, ops []ackOp) (later []ackOp, err error) {
	var del, dead []ackOp
	for _, op := range ops {
		switch op.kind {
		case ackDelete:
			del = append(del, op)
		case ackDead:
			dead = append(dead, op)
		}
	}
	if len(del) > 0 {
		if later, err = s.deleteRows(ctx, del); err != nil {
			return nil, err
		}
	}
	if len(dead) > 0 {
		if err := s.writeDead(ctx, dead); err != nil {
			return nil, err
		}
		if s.cfg.Mode == ModeTable && !s.cfg.KeepAcked {
			for _, op := range dead {
				if op.entry.rec.Seq > 0 {
					later = append(later, ackOp{entry: op.entry, kind: ackDelete})
				}
			}
		}
	}
	return later, nil
}

// deleteRows deletes the rows of del and returns those to try again: rows whose inserting
// transaction the delete's snapshot could not see yet.
func (s *Source) deleteRows(ctx context.Context, del []ackOp) ([]ackOp, error) {
	ids := make([]int64, len(del))
	var xids []int64
	seen := make(map[uint32]bool)
	for i, op := range del {
		ids[i] = op.entry.rec.Seq
		if x := op.entry.txn.xid; !seen[x] {
			seen[x] = true
			xids = append(xids, int64(x))
		}
	}
	var deleted, invisible []int64
	if err := s.cfg.Pool.QueryRow(ctx, s.q.del, ids, xids).Scan(&deleted, &invisible); err != nil {
		return nil, fmt.Errorf("deleting %d acknowledged rows: %w", len(ids), err)
	}
	if len(deleted) == len(ids) || len(invisible) == 0 {
		return nil, nil
	}
	gone := make(map[int64]bool, len(deleted))
	for _, id := range deleted {
		gone[id] = true
	}
	wait := make(map[uint32]bool, len(invisible))
	for _, x := range invisible {
		wait[uint32(x)] = true
	}
	var later []ackOp
	for _, op := range del {
		if !gone[op.entry.rec.Seq] && wait[op.entry.txn.xid] {
			later = append(later, op)
		}
	}
	return later, nil
}

// writeDead inserts dead letters in one statement.
func (s *Source) writeDead(ctx context.Context, dead []ackOp) error {
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
	if _, err := s.cfg.Pool.Exec(ctx, s.q.dead, orig, msgIDs, topics, keys, types, payloads, headers, created, attempts, errs); err != nil {
		return fmt.Errorf("writing %d dead letters: %w", n, err)
	}
	return nil
}
