package wal

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox/internal/envelope"
	"github.com/outboxgo/outbox/internal/sqlident"
	"github.com/outboxgo/outbox/relay/internal/keyqueue"
)

type queries struct {
	del, dead, dup string
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
		dup: `UPDATE ` + t.Derived("_counters").Quoted() + ` SET value = value + $1 WHERE name = 'broker_duplicates'`,
		dead: `INSERT INTO ` + t.Derived("_dead").Quoted() +
			` (original_id, message_id, topic, key, type, payload, headers, created_at, attempts, last_error, failed_at)
SELECT o, m::uuid, tp, k, ty, p, h::jsonb, c, a, e, clock_timestamp()
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::text[], $8::timestamptz[], $9::int[], $10::text[])
  WITH ORDINALITY AS u(o, m, tp, k, ty, p, h, c, a, e, ord) ORDER BY ord`,
	}
}

// apply writes one batch of acknowledgements for the queue's acker: deletes of acknowledged
// rows (idempotent, so first: if what follows fails, the whole batch is simply applied
// again) with the count of broker duplicates among them (in the deletes' transaction), then
// dead letters.
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
		if err := s.writeDead(ctx, dead); err != nil {
			return nil, err
		}
		if s.cfg.Mode == ModeTable && !s.cfg.KeepAcked {
			for _, op := range dead {
				if op.Entry.Record.Seq > 0 {
					later = append(later, ackOp{Entry: op.Entry, Kind: keyqueue.Delete})
				}
			}
		}
	}
	return later, nil
}

// deleteRows deletes the rows of del, and adds dups to the broker duplicates counter, in one
// transaction. It returns the rows to try again: rows whose inserting transaction the
// delete's snapshot could not see yet.
func (s *Source) deleteRows(ctx context.Context, del []ackOp, dups int64) ([]ackOp, error) {
	ids := make([]int64, len(del))
	var xids []int64
	seen := make(map[uint32]bool)
	for i, op := range del {
		ids[i] = op.Entry.Record.Seq
		if x := op.Entry.Txn.Info.xid; !seen[x] {
			seen[x] = true
			xids = append(xids, int64(x))
		}
	}
	var deleted, invisible []int64
	err := pgx.BeginFunc(ctx, s.cfg.Pool, func(tx pgx.Tx) error {
		if dups > 0 {
			if _, err := tx.Exec(ctx, s.queries.dup, dups); err != nil {
				return fmt.Errorf("counting %d broker duplicates: %w", dups, err)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		if err := tx.QueryRow(ctx, s.queries.del, ids, xids).Scan(&deleted, &invisible); err != nil {
			return fmt.Errorf("deleting %d acknowledged rows: %w", len(ids), err)
		}
		return nil
	})
	if err != nil {
		return nil, err
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
		if !gone[op.Entry.Record.Seq] && wait[op.Entry.Txn.Info.xid] {
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
		r := &op.Entry.Record
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
		headers[i] = envelope.HeadersJSON(r.Headers)
		created[i] = r.CreatedAt
		if created[i].IsZero() {
			created[i] = time.Now()
		}
		// The failed attempt counts, as in the store's dead letters.
		attempts[i] = int32(min(r.Attempts+1, 1<<30))
		errs[i] = storable(op.Reason)
	}
	if _, err := s.cfg.Pool.Exec(ctx, s.queries.dead, orig, msgIDs, topics, keys, types, payloads, headers, created, attempts, errs); err != nil {
		return fmt.Errorf("writing %d dead letters: %w", n, err)
	}
	return nil
}
