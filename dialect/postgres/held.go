package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/envelope"
	"github.com/outboxgo/outbox/internal/migrate"
)

// This file serves the WAL source (relay/wal), which reads inserted rows (or logical decoding
// messages) from the WAL instead of claiming rows, keeps retries in memory, and only needs the
// tables changed once a message is done.

var _ dialect.HeldWriter = (*Store)(nil)

// heldQueries are the statements of the dialect.HeldWriter methods.
type heldQueries struct {
	del, dead string
}

func buildHeldQueries(n migrate.Names) heldQueries {
	return heldQueries{
		// The walsender may stream a transaction a moment before it is visible to other
		// sessions (it becomes visible after its commit record is flushed, and after the
		// synchronous standbys confirmed it). So the delete reports which of the transactions
		// (32-bit xids, widened with the epoch of the snapshot) its own snapshot could not see
		// yet: their rows are deleted in a later round. A row missing although its
		// transaction is visible was deleted already (after a restart, or by the producer).
		del: `WITH d AS (DELETE FROM ` + n.Table + ` WHERE id = ANY($1::bigint[]) RETURNING id),
snap AS (SELECT pg_current_snapshot() AS s, pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax),
x AS (SELECT u.x, ((snap.xmax >> 32) << 32) | u.x AS full, snap.s, snap.xmax FROM snap, unnest($2::bigint[]) AS u(x))
SELECT coalesce((SELECT array_agg(id) FROM d), '{}'::bigint[]),
  coalesce((SELECT array_agg(x.x) FROM x WHERE NOT pg_visible_in_snapshot(
    (CASE WHEN x.full > x.xmax THEN x.full - 4294967296 ELSE x.full END)::text::xid8, x.s)), '{}'::bigint[])`,
		dead: `INSERT INTO ` + n.Dead +
			` (original_id, message_id, topic, key, type, payload, headers, created_at, attempts, last_error, failed_at)
SELECT o, m::uuid, tp, k, ty, p, h::jsonb, c, a, e, clock_timestamp()
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bytea[], $7::text[], $8::timestamptz[], $9::int[], $10::text[])
  WITH ORDINALITY AS u(o, m, tp, k, ty, p, h, c, a, e, ord) ORDER BY ord`,
	}
}

// DeleteHeld implements dialect.HeldWriter. The rows it returns as later are those missing
// from the table whose inserting transaction (HeldRow.Txn, a 32-bit xid) the delete's snapshot
// could not see yet; a missing row whose transaction is visible was deleted already. A row
// with Txn 0 is taken as visible.
func (s *Store) DeleteHeld(ctx context.Context, rows []dialect.HeldRow, duplicates int64) ([]dialect.HeldRow, error) {
	ids := make([]int64, len(rows))
	var xids []int64
	seen := make(map[uint32]bool)
	for i, r := range rows {
		ids[i] = r.Seq
		if x := r.Txn; x != 0 && !seen[x] {
			seen[x] = true
			xids = append(xids, int64(x))
		}
	}
	if xids == nil {
		xids = []int64{}
	}
	var deleted, invisible []int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if duplicates > 0 {
			if _, err := tx.Exec(ctx, s.q.duplicates, duplicates); err != nil {
				return fmt.Errorf("counting %d broker duplicates: %w", duplicates, err)
			}
		}
		if len(ids) == 0 {
			return nil
		}
		if err := tx.QueryRow(ctx, s.held.del, ids, xids).Scan(&deleted, &invisible); err != nil {
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
	var later []dialect.HeldRow
	for _, r := range rows {
		if !gone[r.Seq] && wait[r.Txn] {
			later = append(later, r)
		}
	}
	return later, nil
}

// DeadLetterHeld implements dialect.HeldWriter: the dead letters in one statement. With
// deleteRows it deletes nothing itself: it returns the records' rows as later, to be deleted
// with DeleteHeld, which tells a row whose transaction is not visible yet from a row gone.
func (s *Store) DeadLetterHeld(ctx context.Context, dead []dialect.HeldDead, deleteRows bool) ([]dialect.HeldRow, error) {
	if len(dead) == 0 {
		return nil, nil
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
	for i := range dead {
		r := &dead[i].Record
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
		// The failed attempt counts, as in the dead letters of a claim.
		attempts[i] = int32(min(r.Attempts+1, dialect.MaxAttempts))
		errs[i] = storable(dead[i].Error)
	}
	if _, err := s.pool.Exec(ctx, s.held.dead, orig, msgIDs, topics, keys, types, payloads, headers, created, attempts, errs); err != nil {
		return nil, fmt.Errorf("writing %d dead letters: %w", n, err)
	}
	if !deleteRows {
		return nil, nil
	}
	var later []dialect.HeldRow
	for _, d := range dead {
		if d.Record.Seq > 0 {
			later = append(later, d.Row())
		}
	}
	return later, nil
}

// storable makes text fit a PostgreSQL text column: valid UTF-8 without NUL, at most about
// 2000 bytes.
func storable(s string) string { return outbox.StorableText(s, 2000) }
