package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/outboxgo/outbox/dialect"
)

var (
	_ dialect.Inspector          = (*Store)(nil)
	_ dialect.Replayer           = (*Store)(nil)
	_ dialect.DeadLetterIDLister = (*Store)(nil)
)

// Topics implements dialect.Inspector: one pass over the unpublished rows (the pending
// index) and one over the dead letters, grouped by topic. Topics compare as bytes
// (utf8mb4_bin pads: 'a' and 'a ' would group together).
func (s *Store) Topics(ctx context.Context, limit int) ([]dialect.TopicStats, error) {
	if limit <= 0 {
		return nil, nil
	}
	q := `SELECT topic, SUM(pending), SUM(ready), SUM(retrying), MAX(oldest), SUM(dead) FROM (
  SELECT CAST(topic AS BINARY) AS topic, COUNT(*) AS pending, SUM(available_at <= UTC_TIMESTAMP(6)) AS ready,
    SUM(attempts > 0) AS retrying, TIMESTAMPDIFF(MICROSECOND, MIN(created_at), UTC_TIMESTAMP(6)) AS oldest, 0 AS dead
  FROM ` + s.names.Table + ` WHERE published_at IS NULL GROUP BY CAST(topic AS BINARY)
  UNION ALL
  SELECT CAST(topic AS BINARY), 0, 0, 0, NULL, COUNT(*) FROM ` + s.names.Dead + ` GROUP BY CAST(topic AS BINARY)) AS u
GROUP BY topic ORDER BY 2 DESC, topic LIMIT ?`
	out, err := dialect.ScanTopicStats(s.db.QueryContext(ctx, q, limit)) //nolint:rowserrcheck // ScanTopicStats returns rows.Err
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	pending := dialect.PendingTopics(out)
	if len(pending) == 0 {
		return out, nil
	}
	// The error written last among the unpublished rows of each listed topic.
	q = `SELECT topic, last_error FROM (SELECT CAST(topic AS BINARY) AS topic, last_error,
    ROW_NUMBER() OVER (PARTITION BY CAST(topic AS BINARY) ORDER BY last_error_at DESC, id DESC) AS rn
  FROM ` + s.names.Table + ` WHERE published_at IS NULL AND last_error IS NOT NULL
    AND CAST(topic AS BINARY) IN (` + placeholders(len(pending)) + `)) AS e WHERE rn = 1`
	errs, err := dialect.ScanLastErrors(s.db.QueryContext(ctx, q, anys(pending)...)) //nolint:rowserrcheck // ScanLastErrors returns rows.Err
	if err != nil {
		return nil, fmt.Errorf("listing topics' errors: %w", err)
	}
	for i := range out {
		out[i].LastError = errs[out[i].Topic]
	}
	return out, nil
}

func anys(v []string) []any {
	out := make([]any, len(v))
	for i, s := range v {
		out[i] = s
	}
	return out
}

// Relays implements dialect.Inspector.
func (s *Store) Relays(ctx context.Context) ([]dialect.RelayInfo, error) {
	// ORDER BY relay_id as in the heartbeat's members query.
	rows, err := s.db.QueryContext(ctx, `SELECT relay_id, grp, TIMESTAMPDIFF(MICROSECOND, heartbeat_at, UTC_TIMESTAMP(6)) FROM `+
		s.names.Relays+` ORDER BY grp, relay_id`)
	if err != nil {
		return nil, fmt.Errorf("listing relays: %w", err)
	}
	defer rows.Close()
	var out []dialect.RelayInfo
	for rows.Next() {
		var (
			r   dialect.RelayInfo
			age int64
		)
		if err := rows.Scan(&r.ID, &r.Group, &age); err != nil {
			return nil, fmt.Errorf("listing relays: %w", err)
		}
		r.HeartbeatAge = max(time.Duration(age)*time.Microsecond, 0)
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
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM `+s.names.Table).Scan(&n); err != nil {
		return 0, fmt.Errorf("reading the last sequence number: %w", err)
	}
	return n, nil
}

// epoch turns unix microseconds into a DATETIME(6) of the UTC columns.
const epoch = "TIMESTAMPADD(MICROSECOND, ?, '1970-01-01 00:00:00')"

// replayWhere returns the condition selecting a replay's rows and its arguments. The bounds
// on published_at read the pending index (published_at, id) from the window's start.
func replayWhere(f dialect.ReplayFilter) (string, []any) {
	maxSeq := f.MaxSeq
	if maxSeq <= 0 {
		maxSeq = math.MaxInt64
	}
	cond := "published_at >= " + epoch + " AND published_at < " + epoch + " AND id <= ?"
	args := []any{f.From.UnixMicro(), f.To.UnixMicro(), maxSeq}
	if len(f.Topics) > 0 {
		cond += " AND CAST(topic AS BINARY) IN (" + placeholders(len(f.Topics)) + ")"
		args = append(args, anys(f.Topics)...)
	}
	if len(f.Keys) > 0 {
		cond += " AND CAST(`key` AS BINARY) IN (" + placeholders(len(f.Keys)) + ")"
		args = append(args, anys(f.Keys)...)
	}
	return cond, args
}

// CountPublished implements dialect.Replayer.
func (s *Store) CountPublished(ctx context.Context, f dialect.ReplayFilter) (int64, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	cond, args := replayWhere(f)
	var n int64
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.names.Table+" WHERE "+cond, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting published messages: %w", err)
	}
	return n, nil
}

// replayChunk bounds the rows (and replayChunkBytes their payloads) one read, delete and
// insert of ReplayPublished handles: the rows pass through the store's memory.
const (
	replayChunk      = 500
	replayChunkBytes = 4 << 20
)

// ReplayPublished implements dialect.Replayer, in one READ COMMITTED transaction: chunk by
// chunk in id order, the selected rows are read and locked, deleted, and inserted again (one
// multi-row INSERT, which takes ids in its order) with their message ids. A REPLACE would be
// one statement, but InnoDB turns a REPLACE that meets the last unique index into an UPDATE,
// which the binlog source would not see; a DELETE and an INSERT are what every source sees.
func (s *Store) ReplayPublished(ctx context.Context, f dialect.ReplayFilter, limit int) (int64, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	cond, args := replayWhere(f)
	sel := "SELECT id, message_id, topic, `key`, type, payload, headers, " + micros("created_at") + " FROM " + s.names.Table +
		" WHERE " + cond + " ORDER BY id LIMIT ? FOR UPDATE"
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		for n < int64(limit) {
			rows, err := s.replayRead(ctx, tx, sel, slices.Concat(args, []any{min(int64(replayChunk), int64(limit)-n)}))
			if err != nil {
				return err
			}
			if len(rows) == 0 {
				return nil
			}
			ids := make([]int64, len(rows))
			for i, r := range rows {
				ids[i] = r.id
			}
			if _, err := deleteByID(ctx, tx, s.names.Table, ids, ""); err != nil {
				return err
			}
			for start := 0; start < len(rows); {
				end, bytes := start, 0
				for end < len(rows) && (end == start || bytes+len(rows[end].payload) <= replayChunkBytes) {
					bytes += len(rows[end].payload)
					end++
				}
				if err := s.replayInsert(ctx, tx, rows[start:end]); err != nil {
					return err
				}
				start = end
			}
			n += int64(len(rows))
			if len(rows) < replayChunk {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("replaying published messages: %w", err)
	}
	return n, nil
}

// replayRow is one row a replay moves, as stored.
type replayRow struct {
	id                    int64
	messageID, topic, typ string
	key                   sql.NullString
	payload, headers      []byte
	createdUS             int64
}

func (s *Store) replayRead(ctx context.Context, tx *sql.Tx, q string, args []any) ([]replayRow, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []replayRow
	for rows.Next() {
		var r replayRow
		if err := rows.Scan(&r.id, &r.messageID, &r.topic, &r.key, &r.typ, &r.payload, &r.headers, &r.createdUS); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *Store) replayInsert(ctx context.Context, tx *sql.Tx, rows []replayRow) error {
	var b strings.Builder
	b.WriteString("INSERT INTO " + s.names.Table + " (message_id, topic, `key`, type, payload, headers, created_at) VALUES ")
	args := make([]any, 0, 7*len(rows))
	for i, r := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, " + epoch + ")")
		if r.payload == nil {
			r.payload = []byte{} // NOT NULL: an empty payload is not NULL
		}
		var key any
		if r.key.Valid {
			key = r.key.String
		}
		args = append(args, r.messageID, r.topic, key, r.typ, r.payload, string(r.headers), r.createdUS)
	}
	_, err := tx.ExecContext(ctx, b.String(), args...)
	return err
}
