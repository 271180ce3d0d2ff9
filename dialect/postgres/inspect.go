package postgres

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/migrate"
)

var (
	_ dialect.Inspector          = (*Store)(nil)
	_ dialect.Replayer           = (*Store)(nil)
	_ dialect.DeadLetterIDLister = (*Store)(nil)
)

// inspectQueries are the statements of the dialect.Inspector and dialect.Replayer methods.
type inspectQueries struct {
	topics, lastErrors, relays      string
	lastSeq, countPublished, replay string
}

// The selection of a replay: $1 from, $2 to, $3 the greatest id, $4 topics, $5 keys. The
// bounds on published_at imply it is set, so the planner reads the partial index on
// published_at of the published rows only.
const replayWhere = `published_at >= $1 AND published_at < $2 AND id <= $3
  AND (cardinality($4::text[]) = 0 OR topic = ANY($4::text[]))
  AND (cardinality($5::text[]) = 0 OR key = ANY($5::text[]))`

func buildInspectQueries(n migrate.Names) inspectQueries {
	return inspectQueries{
		// One pass over the unpublished rows (the partial index of the pending ones) and one
		// over the dead letters, grouped by topic; names sort byte-wise (COLLATE "C"), as in
		// the other dialects.
		topics: `SELECT topic, sum(pending)::bigint, sum(ready)::bigint, sum(retrying)::bigint, coalesce(max(oldest), 0)::float8, sum(dead)::bigint FROM (
  SELECT topic, count(*) AS pending, count(*) FILTER (WHERE available_at <= now()) AS ready,
    count(*) FILTER (WHERE attempts > 0) AS retrying,
    extract(epoch FROM now() - min(created_at) FILTER (WHERE isfinite(created_at))) AS oldest, 0 AS dead
  FROM ` + n.Table + ` WHERE published_at IS NULL GROUP BY topic
  UNION ALL
  SELECT topic, 0, 0, 0, NULL, count(*) FROM ` + n.Dead + ` GROUP BY topic) AS u
GROUP BY topic ORDER BY 2 DESC, topic COLLATE "C" LIMIT $1`,
		// The error written last among the unpublished rows of each listed topic.
		lastErrors: `SELECT DISTINCT ON (topic) topic, last_error FROM ` + n.Table + `
WHERE published_at IS NULL AND last_error IS NOT NULL AND topic = ANY($1::text[])
ORDER BY topic, last_error_at DESC NULLS LAST, id DESC`,
		// ORDER BY relay_id as in the heartbeat's members query: the order the relays share
		// the key space in.
		relays:         `SELECT relay_id, grp, greatest(extract(epoch FROM now() - heartbeat_at), 0)::float8 FROM ` + n.Relays + ` ORDER BY grp, relay_id`,
		lastSeq:        `SELECT coalesce(max(id), 0) FROM ` + n.Table,
		countPublished: `SELECT count(*) FROM ` + n.Table + ` WHERE ` + replayWhere,
		// The rows are locked in id order, deleted and inserted again in that order in one
		// statement: the new rows take new ids at the end of the queue, with their message
		// ids (the unique index sees the deleted rows as gone: they are this statement's),
		// attempts and availability reset by the defaults.
		replay: `WITH moved AS (
  DELETE FROM ` + n.Table + ` WHERE id IN (SELECT id FROM ` + n.Table + ` WHERE ` + replayWhere + ` ORDER BY id LIMIT $6 FOR UPDATE)
  RETURNING *)
INSERT INTO ` + n.Table + ` (message_id, topic, key, type, payload, headers, created_at)
SELECT message_id, topic, key, type, payload, headers, created_at FROM moved ORDER BY id`,
	}
}

// Topics implements dialect.Inspector.
func (s *Store) Topics(ctx context.Context, limit int) ([]dialect.TopicStats, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, s.iq.topics, limit)
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (dialect.TopicStats, error) {
		var (
			t      dialect.TopicStats
			oldest float64
		)
		err := r.Scan(&t.Topic, &t.Pending, &t.Ready, &t.Retrying, &oldest, &t.DeadLetters)
		t.OldestPending = max(time.Duration(oldest*float64(time.Second)), 0)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing topics: %w", err)
	}
	var failing []string
	for _, t := range out {
		if t.Pending > 0 {
			failing = append(failing, t.Topic)
		}
	}
	if len(failing) == 0 {
		return out, nil
	}
	rows, err = s.pool.Query(ctx, s.iq.lastErrors, failing)
	if err != nil {
		return nil, fmt.Errorf("listing topics' errors: %w", err)
	}
	errs := map[string]string{}
	var topic, msg string
	if _, err := pgx.ForEachRow(rows, []any{&topic, &msg}, func() error { errs[topic] = msg; return nil }); err != nil {
		return nil, fmt.Errorf("listing topics' errors: %w", err)
	}
	for i := range out {
		out[i].LastError = errs[out[i].Topic]
	}
	return out, nil
}

// Relays implements dialect.Inspector.
func (s *Store) Relays(ctx context.Context) ([]dialect.RelayInfo, error) {
	rows, err := s.pool.Query(ctx, s.iq.relays)
	if err != nil {
		return nil, fmt.Errorf("listing relays: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (dialect.RelayInfo, error) {
		var (
			ri  dialect.RelayInfo
			age float64
		)
		err := r.Scan(&ri.ID, &ri.Group, &age)
		ri.HeartbeatAge = time.Duration(age * float64(time.Second))
		return ri, err
	})
	if err != nil {
		return nil, fmt.Errorf("listing relays: %w", err)
	}
	return out, nil
}

// LastSeq implements dialect.Replayer.
func (s *Store) LastSeq(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, s.iq.lastSeq).Scan(&n); err != nil {
		return 0, fmt.Errorf("reading the last sequence number: %w", err)
	}
	return n, nil
}

// replayArgs are the selection's parameters $1 to $5 (replayWhere).
func replayArgs(f dialect.ReplayFilter) []any {
	maxSeq := f.MaxSeq
	if maxSeq <= 0 {
		maxSeq = math.MaxInt64
	}
	topics, keys := f.Topics, f.Keys
	if topics == nil {
		topics = []string{}
	}
	if keys == nil {
		keys = []string{}
	}
	return []any{f.From, f.To, maxSeq, topics, keys}
}

// CountPublished implements dialect.Replayer.
func (s *Store) CountPublished(ctx context.Context, f dialect.ReplayFilter) (int64, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	var n int64
	if err := s.pool.QueryRow(ctx, s.iq.countPublished, replayArgs(f)...).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting published messages: %w", err)
	}
	return n, nil
}

// ReplayPublished implements dialect.Replayer: one statement, so one transaction.
func (s *Store) ReplayPublished(ctx context.Context, f dialect.ReplayFilter, limit int) (int64, error) {
	if err := f.Validate(); err != nil {
		return 0, err
	}
	if limit <= 0 {
		return 0, nil
	}
	tag, err := s.pool.Exec(ctx, s.iq.replay, append(replayArgs(f), limit)...)
	if err != nil {
		return 0, fmt.Errorf("replaying published messages: %w", err)
	}
	return tag.RowsAffected(), nil
}
