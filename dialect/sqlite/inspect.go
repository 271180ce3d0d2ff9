package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/outboxgo/outbox/dialect"
)

var (
	_ dialect.Inspector          = (*Store)(nil)
	_ dialect.Replayer           = (*Store)(nil)
	_ dialect.DeadLetterIDLister = (*Store)(nil)
)

// topicStatsQuery lists the topics: one pass over the unpublished rows and one over the dead
// letters, grouped by topic. ?1 is now, ?2 the limit.
func (s *Store) topicStatsQuery() string {
	return `SELECT topic, sum(pending), sum(ready), sum(retrying), max(oldest), sum(dead) FROM (
  SELECT topic, count(*) AS pending, sum(available_at <= ?1) AS ready, sum(attempts > 0) AS retrying,
    ?1 - min(created_at) AS oldest, 0 AS dead
  FROM ` + s.names.Table + ` WHERE published_at IS NULL GROUP BY topic
  UNION ALL
  SELECT topic, 0, 0, 0, NULL, count(*) FROM ` + s.names.Dead + ` GROUP BY topic)
GROUP BY topic ORDER BY 2 DESC, topic LIMIT ?2`
}

// Topics implements dialect.Inspector.
func (s *Store) Topics(ctx context.Context, limit int) ([]dialect.TopicStats, error) {
	if limit <= 0 {
		return nil, nil
	}
	out, err := dialect.ScanTopicStats(s.db.QueryContext(ctx, s.topicStatsQuery(), time.Now().UnixMicro(), limit)) //nolint:rowserrcheck // ScanTopicStats returns rows.Err
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	pending := dialect.PendingTopics(out)
	if len(pending) == 0 {
		return out, nil
	}
	b, _ := json.Marshal(pending) // []string always marshals
	// The error written last among the unpublished rows of each listed topic (rows failed
	// before last_error_at existed sort last).
	q := `SELECT topic, last_error FROM (SELECT topic, last_error,
    row_number() OVER (PARTITION BY topic ORDER BY last_error_at DESC, id DESC) AS rn
  FROM ` + s.names.Table + ` WHERE published_at IS NULL AND last_error IS NOT NULL
    AND topic IN (SELECT value FROM json_each(?))) WHERE rn = 1`
	errs, err := dialect.ScanLastErrors(s.db.QueryContext(ctx, q, string(b))) //nolint:rowserrcheck // ScanLastErrors returns rows.Err
	if err != nil {
		return nil, fmt.Errorf("listing topics' errors: %w", err)
	}
	for i := range out {
		out[i].LastError = errs[out[i].Topic]
	}
	return out, nil
}

// Relays implements dialect.Inspector.
func (s *Store) Relays(ctx context.Context) ([]dialect.RelayInfo, error) {
	// ORDER BY relay_id as in the heartbeat's members query.
	rows, err := s.db.QueryContext(ctx, `SELECT relay_id, grp, heartbeat_at FROM `+s.names.Relays+` ORDER BY grp, relay_id`)
	if err != nil {
		return nil, fmt.Errorf("listing relays: %w", err)
	}
	defer rows.Close()
	now := time.Now().UnixMicro()
	var out []dialect.RelayInfo
	for rows.Next() {
		var (
			r  dialect.RelayInfo
			at int64
		)
		if err := rows.Scan(&r.ID, &r.Group, &at); err != nil {
			return nil, fmt.Errorf("listing relays: %w", err)
		}
		r.HeartbeatAge = max(time.Duration(now-at)*time.Microsecond, 0)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing relays: %w", err)
	}
	return out, nil
}

// LastSeq implements dialect.Replayer.
func (s *Store) LastSeq(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM `+s.names.Table).Scan(&n); err != nil {
		return 0, fmt.Errorf("reading the last sequence number: %w", err)
	}
	return n, nil
}

// replayWhere selects a replay's rows: ?1 from, ?2 to (unix microseconds), ?3 the greatest
// id, ?4 topics and ?5 keys (JSON arrays, empty for all). The bounds on published_at use the
// partial index of the published rows.
const replayWhere = `published_at >= ?1 AND published_at < ?2 AND id <= ?3
  AND (json_array_length(?4) = 0 OR topic IN (SELECT value FROM json_each(?4)))
  AND (json_array_length(?5) = 0 OR key IN (SELECT value FROM json_each(?5)))`

func replayArgs(f dialect.ReplayFilter) []any {
	maxSeq := f.MaxSeq
	if maxSeq <= 0 {
		maxSeq = math.MaxInt64
	}
	list := func(v []string) string {
		if v == nil {
			v = []string{}
		}
		b, _ := json.Marshal(v) // []string always marshals
		return string(b)
	}
	return []any{f.From.UnixMicro(), f.To.UnixMicro(), maxSeq, list(f.Topics), list(f.Keys)}
}

// CountPublished implements dialect.Replayer.
func (s *Store) CountPublished(ctx context.Context, f dialect.ReplayFilter) (int64, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	var n int64
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM `+s.names.Table+` WHERE `+replayWhere, replayArgs(f)...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting published messages: %w", err)
	}
	return n, nil
}

// ReplayPublished implements dialect.Replayer, in one statement: INSERT OR REPLACE of the
// selected rows, read in id order, with their message ids. Each new row's message id meets
// its old row in the unique index, and REPLACE deletes the old row before it inserts the
// new one (SQLite reads the whole selection first when a statement inserts into the table it
// reads), which takes a new id at the end of the queue; attempts and availability are reset.
func (s *Store) ReplayPublished(ctx context.Context, f dialect.ReplayFilter, limit int) (int64, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	q := `INSERT OR REPLACE INTO ` + s.names.Table + ` (message_id, topic, key, type, payload, headers, created_at, available_at)
SELECT message_id, topic, key, type, payload, headers, created_at, ?6 FROM ` + s.names.Table + `
WHERE ` + replayWhere + ` ORDER BY id LIMIT ?7`
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, q, append(replayArgs(f), time.Now().UnixMicro(), limit)...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("replaying published messages: %w", err)
	}
	return n, nil
}
