package mysql

import (
	"context"
	"errors"
	"fmt"

	"github.com/go-sql-driver/mysql"

	"github.com/outboxgo/outbox/dialect"
)

var _ dialect.Pauser = (*Store)(nil)

// Server error numbers of the pauses' statements.
const (
	errNoSuchTable  = 1146
	errDuplicateKey = 1062
)

// pauseErr wraps err, reporting a missing pauses table (before migration 4) as
// dialect.ErrNoPausesTable.
func pauseErr(what string, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == errNoSuchTable {
		return fmt.Errorf("%s: %w", what, dialect.ErrNoPausesTable)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Pause implements dialect.Pauser.
func (s *Store) Pause(ctx context.Context, p dialect.Pause) error {
	if err := p.Validate(); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, "INSERT INTO "+s.names.Sibling("_pauses")+
		" (kind, name, reason, paused_by, paused_at) VALUES (?, ?, ?, ?, UTC_TIMESTAMP(6))",
		string(p.Kind), p.Name, p.Reason, p.PausedBy)
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == errDuplicateKey {
		return fmt.Errorf("pausing %s %q: %w", p.Kind, p.Name, dialect.ErrAlreadyPaused)
	}
	if err != nil {
		return pauseErr(fmt.Sprintf("pausing %s %q", p.Kind, p.Name), err)
	}
	return nil
}

// Resume implements dialect.Pauser.
func (s *Store) Resume(ctx context.Context, kind dialect.PauseKind, name string) error {
	res, err := s.db.ExecContext(ctx, "DELETE FROM "+s.names.Sibling("_pauses")+
		" WHERE kind = ? AND CAST(name AS BINARY) = ?", string(kind), name)
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
	rows, err := s.db.QueryContext(ctx, "SELECT kind, name, reason, paused_by, "+micros("paused_at")+
		" FROM "+s.names.Sibling("_pauses")+" ORDER BY kind, name")
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
		p.Kind, p.PausedAt = dialect.PauseKind(kind), fromMicros(at)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing pauses: %w", err)
	}
	return out, nil
}
