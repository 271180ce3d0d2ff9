package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/envelope"
)

// This file serves sources that hold messages themselves instead of claiming rows: the binlog
// source (relay/binlog) reads inserted rows from the binary log, keeps retries in memory, and
// only needs the table changed once a message is done.

// DeleteRows deletes outbox rows by id (acknowledged messages), in one READ COMMITTED
// transaction, reaching each row through its primary key. It returns how many rows it deleted:
// rows already gone (deleted before, or by their producer) are not an error.
func (s *Store) DeleteRows(ctx context.Context, ids []int64) (int64, error) {
	return s.AckRows(ctx, ids, 0)
}

// AckRows is DeleteRows that also adds duplicates (messages their broker acknowledged as
// duplicates, see outbox.Outcome.Duplicates) to Stats.BrokerDuplicates, in the same
// transaction.
func (s *Store) AckRows(ctx context.Context, ids []int64, duplicates int64) (int64, error) {
	if len(ids) == 0 && duplicates == 0 {
		return 0, nil
	}
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if duplicates > 0 {
			if _, err := tx.ExecContext(ctx, s.q.duplicates, duplicates); err != nil {
				return fmt.Errorf("counting broker duplicates: %w", err)
			}
		}
		var err error
		n, err = deleteByID(ctx, tx, s.names.Table, ids, "")
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("deleting %d rows: %w", len(ids), err)
	}
	return n, nil
}

// HeldDead is a message to dead-letter as its holder has it: the record (its Attempts the
// failed attempts before the last one) and the last error.
type HeldDead struct {
	Record outbox.Record
	Error  string
}

// WriteDeadLetters inserts messages into the dead-letter table from their records (not from
// the outbox table, which may no longer hold them, and whose attempts column a holder does not
// update), and, when deleteRows, deletes their rows from the outbox table, in one READ
// COMMITTED transaction. As with the dead letters of a claim, original_id is the record's Seq
// and attempts counts the last, failed, attempt (Record.Attempts + 1).
func (s *Store) WriteDeadLetters(ctx context.Context, dead []HeldDead, deleteRows bool) error {
	if len(dead) == 0 {
		return nil
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
				headers := envelope.HeadersJSON(r.Headers)
				var created int64
				if !r.CreatedAt.IsZero() {
					created = r.CreatedAt.UnixMicro()
				}
				args = append(args, r.Seq, r.ID.String(), r.Topic, key, r.Type, payload, headers, created,
					min(r.Attempts+1, 1<<30), storable(d.Error))
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
		return fmt.Errorf("writing %d dead letters: %w", len(dead), err)
	}
	return nil
}

// ParseHeaders decodes a headers column value as the store's claims do: a JSON object whose
// string values are taken as they are and whose other values (rows written by hand or by
// other languages) are kept as their JSON text. Empty and {} give nil.
func ParseHeaders(raw []byte) (map[string]string, error) {
	return dialect.DecodeHeaders(raw)
}
