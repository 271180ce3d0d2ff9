package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/outboxgo/outbox/dialect"
)

// Driver is what the migration loop needs of one dialect. The loop (Runner) decides what to
// apply or revert, in which order, and what to report; the driver only runs statements.
type Driver interface {
	// Session runs fn in a migration session: holding the dialect's migration lock, if it
	// has one, with the versions table created when missing, and inside one transaction where
	// the dialect's DDL is transactional. When fn fails the session ends without committing
	// what it can undo, and Session returns fn's error.
	Session(ctx context.Context, fn func(Session) error) error
	// Applied reads the applied versions, and when each was applied, without creating or
	// locking anything: none when the versions table does not exist.
	Applied(ctx context.Context) (map[int]time.Time, error)
}

// Session is one migration session of a Driver.
type Session interface {
	// Applied reads the applied versions, and when each was applied.
	Applied(ctx context.Context) (map[int]time.Time, error)
	// Exec runs a migration's script (its Up or Down).
	Exec(ctx context.Context, script string) error
	// Record notes m as applied.
	Record(ctx context.Context, m Migration) error
	// Unrecord forgets that version is applied.
	Unrecord(ctx context.Context, version int) error
}

// Runner is the apply, record, revert and status loop every dialect shares: it implements
// dialect.Migrator over a dialect's migrations and Driver.
type Runner struct {
	// Load returns the dialect's migrations in version order (Load or LoadBacktick).
	Load func() ([]Migration, error)
	// Driver runs the statements.
	Driver Driver
}

var _ dialect.Migrator = Runner{}

// MigrateUp applies every pending migration in version order, recording each in the session
// that applies it, and returns the versions applied.
func (r Runner) MigrateUp(ctx context.Context) ([]int, error) {
	ms, err := r.Load()
	if err != nil {
		return nil, err
	}
	var done []int
	err = r.Driver.Session(ctx, func(s Session) error {
		applied, err := s.Applied(ctx)
		if err != nil {
			return fmt.Errorf("reading applied migrations: %w", err)
		}
		for _, m := range Pending(ms, applied) {
			if err := s.Exec(ctx, m.Up); err != nil {
				return fmt.Errorf("applying migration %d_%s: %w", m.Version, m.Name, err)
			}
			if err := s.Record(ctx, m); err != nil {
				return fmt.Errorf("recording migration %d: %w", m.Version, err)
			}
			done = append(done, m.Version)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return done, nil
}

// MigrateDown reverts the most recent steps applied migrations (all when steps <= 0), newest
// first, and returns the versions reverted. It returns dialect.ErrNoMigrations when nothing is
// applied.
func (r Runner) MigrateDown(ctx context.Context, steps int) ([]int, error) {
	ms, err := r.Load()
	if err != nil {
		return nil, err
	}
	var done []int
	err = r.Driver.Session(ctx, func(s Session) error {
		applied, err := s.Applied(ctx)
		if err != nil {
			return fmt.Errorf("reading applied migrations: %w", err)
		}
		if len(applied) == 0 {
			return dialect.ErrNoMigrations
		}
		for _, m := range ToRevert(ms, applied, steps) {
			if err := s.Exec(ctx, m.Down); err != nil {
				return fmt.Errorf("reverting migration %d_%s: %w", m.Version, m.Name, err)
			}
			if err := s.Unrecord(ctx, m.Version); err != nil {
				return fmt.Errorf("unrecording migration %d: %w", m.Version, err)
			}
			done = append(done, m.Version)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return done, nil
}

// MigrationStatus lists every migration and whether it is applied. It only reads.
func (r Runner) MigrationStatus(ctx context.Context) ([]dialect.MigrationStatus, error) {
	ms, err := r.Load()
	if err != nil {
		return nil, err
	}
	applied, err := r.Driver.Applied(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading applied migrations: %w", err)
	}
	return Status(ms, applied), nil
}

// Querier is what QueryApplied needs: a *sql.DB, *sql.Conn or *sql.Tx.
type Querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// QueryApplied runs query, a database/sql query of (version, applied_at as an integer), and
// reads the applied versions, turning each applied_at into a time with at.
func QueryApplied(ctx context.Context, q Querier, query string, at func(int64) time.Time) (map[int]time.Time, error) {
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	applied := map[int]time.Time{}
	for rows.Next() {
		var (
			v int
			n int64
		)
		if err := rows.Scan(&v, &n); err != nil {
			return nil, err
		}
		applied[v] = at(n)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	return applied, nil
}
