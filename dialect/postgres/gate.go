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

// undefinedTable is the SQLSTATE of a missing relation: the wake-up sequences of migration 6.
const undefinedTable = "42P01"

// OpenGate implements dialect.WakeGate: it moves the table's _wake_until (migration 6) to at
// least lease from now and _wake_clock to now, by the database's clock, so that commits notify
// until a relay moves the clock past the deadline.
func (s *Store) OpenGate(ctx context.Context, lease time.Duration) (bool, error) {
	var was bool
	var until, clock int64
	if err := s.pool.QueryRow(ctx, s.q.openGate, max(lease.Milliseconds(), 1)).Scan(&was, &until, &clock); err != nil {
		return false, gateErr("opening", err)
	}
	return was, nil
}

// CloseGate implements dialect.WakeGate: it moves _wake_clock up to _wake_until.
func (s *Store) CloseGate(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, s.q.closeGate); err != nil {
		return gateErr("closing", err)
	}
	return nil
}

// AdvanceGate implements dialect.WakeGate: while the gate is open, it moves _wake_clock to now.
func (s *Store) AdvanceGate(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, s.q.advanceGate); err != nil {
		return gateErr("advancing", err)
	}
	return nil
}

// gateErr is ErrNoGate for a schema without the gate's sequences, else err wrapped.
func gateErr(what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == undefinedTable {
		return dialect.ErrNoGate
	}
	return fmt.Errorf("%s the wake-up gate: %w", what, err)
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
