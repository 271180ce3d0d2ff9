package sqlite

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/outboxgo/outbox/dialect"
)

var _ dialect.Pauser = (*Store)(nil)

// pauseErr wraps err, reporting a missing pauses table (before migration 4) as
// dialect.ErrNoPausesTable.
func pauseErr(what string, err error) error {
	if strings.Contains(err.Error(), "no such table") {
		return fmt.Errorf("%s: %w (%w)", what, dialect.ErrNoPausesTable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Pause implements dialect.Pauser.
func (s *Store) Pause(ctx context.Context, p dialect.Pause) error {
	if err := p.Validate(); err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO `+s.names.Sibling("_pauses")+` (kind, name, reason, paused_by, paused_at)
VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, name) DO NOTHING`, string(p.Kind), p.Name, p.Reason, p.PausedBy, time.Now().UnixMicro())
	if err != nil {
		return pauseErr(fmt.Sprintf("pausing %s %q", p.Kind, p.Name), err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("pausing %s %q: %w", p.Kind, p.Name, err)
	} else if n == 0 {
		return fmt.Errorf("pausing %s %q: %w", p.Kind, p.Name, dialect.ErrAlreadyPaused)
	}
	return nil
}

// Resume implements dialect.Pauser.
func (s *Store) Resume(ctx context.Context, kind dialect.PauseKind, name string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM `+s.names.Sibling("_pauses")+` WHERE kind = ? AND name = ?`, string(kind), name)
	if err != nil {
		return pauseErr(fmt.Sprintf("resuming %s %q", kind, name), err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("resuming %s %q: %w", kind, name, err)
	} else if n == 0 {
		return fmt.Errorf("resuming %s %q: %w", kind, name, dialect.ErrNotPaused)
	}
	return nil
}

// ListPauses implements dialect.Pauser.
func (s *Store) ListPauses(ctx context.Context) ([]dialect.Pause, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT kind, name, reason, paused_by, paused_at FROM `+s.names.Sibling("_pauses")+` ORDER BY kind, name`)
	if err != nil {
		return nil, pauseErr("listing pauses", err)
	}
	defer rows.Close()
	var out []dialect.Pause
	for rows.Next() {
		var (
			p    dialect.Pause
			kind string
			at   int64
		)
		if err := rows.Scan(&kind, &p.Name, &p.Reason, &p.PausedBy, &at); err != nil {
			return nil, fmt.Errorf("listing pauses: %w", err)
		}
		p.Kind, p.PausedAt = dialect.PauseKind(kind), time.UnixMicro(at)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing pauses: %w", err)
	}
	return out, nil
}
