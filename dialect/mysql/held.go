package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/envelope"
)

// This file serves the binlog source (relay/binlog), which reads inserted rows from the binary
// log instead of claiming rows, keeps retries in memory, and only needs the tables changed once
// a message is done.

var _ dialect.HeldWriter = (*Store)(nil)

// DeleteHeld implements dialect.HeldWriter: one READ COMMITTED transaction, reaching each row
// through its primary key. The delete is a locking read: it waits for the inserting
// transaction (MariaDB writes the binary log before the storage engine commits), so no row is
// left for later.
func (s *Store) DeleteHeld(ctx context.Context, rows []dialect.HeldRow, duplicates int64) ([]dialect.HeldRow, error) {
	if len(rows) == 0 && duplicates == 0 {
		return nil, nil
	}
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = r.Seq
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if duplicates > 0 {
			if _, err := tx.ExecContext(ctx, s.q.duplicates, duplicates); err != nil {
				return fmt.Errorf("counting broker duplicates: %w", err)
			}
		}
		_, err := deleteByID(ctx, tx, s.names.Table, ids, "")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("deleting %d rows: %w", len(ids), err)
	}
	return nil, nil
}

// DeadLetterHeld implements dialect.HeldWriter: the dead letters and, with deleteRows, the
// deletes of their rows, in one READ COMMITTED transaction; nothing is left for later.
func (s *Store) DeadLetterHeld(ctx context.Context, dead []dialect.HeldDead, deleteRows bool) ([]dialect.HeldRow, error) {
	if len(dead) == 0 {
		return nil, nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// 11 placeholders a row: well within the 65,535 of a statement.
		const per = 11
		for start := 0; start < len(dead); start += chunk {
			part := dead[start:min(start+chunk, len(dead))]
			var b strings.Builder
			b.WriteString("INSERT INTO " + s.names.Dead +
				" (original_id, message_id, topic, `key`, type, payload, headers, created_at, attempts, last_error, failed_at) VALUES ")
			args := make([]any, 0, per*len(part))
			ids := make([]int64, 0, len(part))
			for i, d := range part {
				if i > 0 {
					b.WriteByte(',')
				}
				// Times as microseconds since the epoch: independent of the session's time_zone.
				b.WriteString("(?, ?, ?, ?, ?, ?, ?, TIMESTAMPADD(MICROSECOND, ?, '1970-01-01 00:00:00'), ?, ?, UTC_TIMESTAMP(6))")
				r := &d.Record
				var key any
				if r.Key != "" {
					key = r.Key
				}
				payload := r.Payload
				if payload == nil {
					payload = []byte{}
				}
				var created int64
				if !r.CreatedAt.IsZero() {
					created = r.CreatedAt.UnixMicro()
				}
				args = append(args, r.Seq, r.ID.String(), r.Topic, key, r.Type, payload, envelope.HeadersJSON(r.Headers), created,
					min(r.Attempts+1, dialect.MaxAttempts), storable(d.Error))
				ids = append(ids, r.Seq)
			}
			if _, err := tx.ExecContext(ctx, b.String(), args...); err != nil {
				return err
			}
			if deleteRows {
				if _, err := deleteByID(ctx, tx, s.names.Table, ids, ""); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("writing %d dead letters: %w", len(dead), err)
	}
	return nil, nil
}
