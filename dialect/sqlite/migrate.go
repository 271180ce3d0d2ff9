package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/migrate"
)

func (s *Store) migrations() ([]migrate.Migration, error) {
	return migrate.Load(migrationFS, "migrations", s.names)
}

func (s *Store) versionsTable() string { return s.table.Derived("_migrations").Quoted() }

// inMigrationTx runs fn in a write transaction with the versions table in place and the
// applied versions read. SQLite's single write lock serialises concurrent migrations (two
// relays starting together), as the advisory lock does in PostgreSQL.
func (s *Store) inMigrationTx(ctx context.Context, fn func(tx *sql.Tx, applied map[int]time.Time) error) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+s.versionsTable()+
			` (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
			return fmt.Errorf("creating migrations table: %w", err)
		}
		rows, err := tx.QueryContext(ctx, `SELECT version, applied_at FROM `+s.versionsTable())
		if err != nil {
			return fmt.Errorf("reading applied migrations: %w", err)
		}
		defer rows.Close()
		applied := map[int]time.Time{}
		for rows.Next() {
			var v int
			var atUS int64
			if err := rows.Scan(&v, &atUS); err != nil {
				return fmt.Errorf("reading applied migrations: %w", err)
			}
			applied[v] = time.UnixMicro(atUS)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reading applied migrations: %w", err)
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("reading applied migrations: %w", err)
		}
		return fn(tx, applied)
	})
}

// MigrateUp implements dialect.Migrator.
func (s *Store) MigrateUp(ctx context.Context) ([]int, error) {
	ms, err := s.migrations()
	if err != nil {
		return nil, err
	}
	var done []int
	err = s.inMigrationTx(ctx, func(tx *sql.Tx, applied map[int]time.Time) error {
		for _, m := range migrate.Pending(ms, applied) {
			if _, err := tx.ExecContext(ctx, m.Up); err != nil {
				return fmt.Errorf("applying migration %d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO `+s.versionsTable()+` (version, name, applied_at) VALUES (?, ?, ?)`,
				m.Version, m.Name, time.Now().UnixMicro()); err != nil {
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

// MigrateDown implements dialect.Migrator.
func (s *Store) MigrateDown(ctx context.Context, steps int) ([]int, error) {
	ms, err := s.migrations()
	if err != nil {
		return nil, err
	}
	var done []int
	err = s.inMigrationTx(ctx, func(tx *sql.Tx, applied map[int]time.Time) error {
		if len(applied) == 0 {
			return dialect.ErrNoMigrations
		}
		for _, m := range migrate.ToRevert(ms, applied, steps) {
			if _, err := tx.ExecContext(ctx, m.Down); err != nil {
				return fmt.Errorf("reverting migration %d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+s.versionsTable()+` WHERE version = ?`, m.Version); err != nil {
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

// MigrationStatus implements dialect.Migrator. A read only: no versions table is created
// (nothing is applied without one).
func (s *Store) MigrationStatus(ctx context.Context) ([]dialect.MigrationStatus, error) {
	ms, err := s.migrations()
	if err != nil {
		return nil, err
	}
	applied := map[int]time.Time{}
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`,
		s.table.Derived("_migrations").Name).Scan(&n); err != nil {
		return nil, fmt.Errorf("reading applied migrations: %w", err)
	}
	if n > 0 {
		rows, err := s.db.QueryContext(ctx, `SELECT version, applied_at FROM `+s.versionsTable())
		if err != nil {
			return nil, fmt.Errorf("reading applied migrations: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var v int
			var atUS int64
			if err := rows.Scan(&v, &atUS); err != nil {
				return nil, fmt.Errorf("reading applied migrations: %w", err)
			}
			applied[v] = time.UnixMicro(atUS)
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("reading applied migrations: %w", err)
		}
	}
	return migrate.Status(ms, applied), nil
}
