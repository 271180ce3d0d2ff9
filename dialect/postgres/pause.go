package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outboxgo/outbox/dialect"
)

var _ dialect.Pauser = (*Store)(nil)

// uniqueViolation is the SQLSTATE of a duplicate key.
const uniqueViolation = "23505"

func (s *Store) pausesTable() string { return s.table.Derived("_pauses").Quoted() }

// pauseErr wraps err, reporting a missing pauses table (before migration 7) as
// dialect.ErrNoPausesTable.
func pauseErr(what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == undefinedTable {
		return fmt.Errorf("%s: %w", what, dialect.ErrNoPausesTable)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Pause implements dialect.Pauser.
func (s *Store) Pause(ctx context.Context, p dialect.Pause) error {
	if err := p.Validate(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO `+s.pausesTable()+` (kind, name, reason, paused_by, paused_at)
VALUES ($1, $2, $3, $4, clock_timestamp())`, string(p.Kind), p.Name, p.Reason, p.PausedBy)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == uniqueViolation {
		return fmt.Errorf("pausing %s %q: %w", p.Kind, p.Name, dialect.ErrAlreadyPaused)
	}
	if err != nil {
		return pauseErr(fmt.Sprintf("pausing %s %q", p.Kind, p.Name), err)
	}
	return nil
}

// Resume implements dialect.Pauser.
func (s *Store) Resume(ctx context.Context, kind dialect.PauseKind, name string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM `+s.pausesTable()+` WHERE kind = $1 AND name = $2`, string(kind), name)
	if err != nil {
		return pauseErr(fmt.Sprintf("resuming %s %q", kind, name), err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("resuming %s %q: %w", kind, name, dialect.ErrNotPaused)
	}
	return nil
}

// ListPauses implements dialect.Pauser.
func (s *Store) ListPauses(ctx context.Context) ([]dialect.Pause, error) {
	rows, err := s.pool.Query(ctx, `SELECT kind, name, reason, paused_by, paused_at FROM `+s.pausesTable()+
		` ORDER BY kind COLLATE "C", name COLLATE "C"`)
	if err != nil {
		return nil, pauseErr("listing pauses", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (dialect.Pause, error) {
		var (
			p    dialect.Pause
			kind string
		)
		err := r.Scan(&kind, &p.Name, &p.Reason, &p.PausedBy, &p.PausedAt)
		p.Kind = dialect.PauseKind(kind)
		return p, err
	})
	if err != nil {
		return nil, pauseErr("listing pauses", err)
	}
	return out, nil
}
