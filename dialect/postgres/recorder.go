package postgres

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox/dialect"
)

var _ dialect.Recorder = (*Store)(nil)

// recordQuery is RecordPublished's statement around write, the DELETE (or UPDATE) of the
// locked rows l.
func recordQuery(table, write string) string {
	return `WITH u AS (SELECT * FROM unnest($1::bigint[], $2::uuid[]) AS u(id, mid)),
l AS (SELECT t.id FROM ` + table + ` AS t JOIN u ON t.id = u.id AND t.message_id = u.mid
  WHERE t.published_at IS NULL FOR UPDATE OF t SKIP LOCKED),
w AS (` + write + `)
SELECT id FROM w
UNION ALL
SELECT u.id FROM u WHERE NOT EXISTS (SELECT 1 FROM ` + table + ` AS t
  WHERE t.id = u.id AND t.message_id = u.mid AND t.published_at IS NULL)`
}

// RecordPublished implements dialect.Recorder.
func (s *Store) RecordPublished(ctx context.Context, refs []dialect.Ref, retain bool) ([]int64, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(refs))
	mids := make([]uuid.UUID, len(refs))
	for i, r := range refs {
		ids[i], mids[i] = r.Seq, r.ID
	}
	q := s.q.recordDelete
	if retain {
		q = s.q.recordMark
	}
	rows, err := s.pool.Query(ctx, q, ids, mids)
	if err != nil {
		return nil, fmt.Errorf("recording published messages: %w", err)
	}
	defer rows.Close()
	done := make([]int64, 0, len(refs))
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("recording published messages: %w", err)
		}
		done = append(done, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("recording published messages: %w", err)
	}
	return done, nil
}
