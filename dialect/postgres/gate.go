package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outboxgo/outbox/dialect"
)

var _ dialect.WakeGate = (*Store)(nil)

// undefinedTable is the SQLSTATE of a missing relation: the wake-up sequence of migration 6.
const undefinedTable = "42P01"

// OpenGate implements dialect.WakeGate: it moves the deadline in the table's _wake sequence
// (migration 6) to at least lease from now, by the database's clock, so that commits notify
// until then.
func (s *Store) OpenGate(ctx context.Context, lease time.Duration) error {
	if _, err := s.pool.Exec(ctx, s.q.openGate, max(lease.Milliseconds(), 1)); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == undefinedTable {
			return dialect.ErrNoGate
		}
		return fmt.Errorf("opening the wake-up gate: %w", err)
	}
	return nil
}

// InProgress implements dialect.WakeGate: the transactions of a snapshot taken now.
func (s *Store) InProgress(ctx context.Context) ([]uint64, error) {
	var txs []uint64
	if err := s.pool.QueryRow(ctx, s.q.inProgress).Scan(&txs); err != nil {
		return nil, fmt.Errorf("listing transactions in progress: %w", err)
	}
	return txs, nil
}

// Running implements dialect.WakeGate.
func (s *Store) Running(ctx context.Context, txs []uint64) ([]uint64, error) {
	if len(txs) == 0 {
		return nil, nil
	}
	var running []uint64
	if err := s.pool.QueryRow(ctx, s.q.running, txs).Scan(&running); err != nil {
		return nil, fmt.Errorf("checking transactions in progress: %w", err)
	}
	return running, nil
}
