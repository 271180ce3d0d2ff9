package postgres

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/migrate"
)

func (s *Store) migrations() ([]migrate.Migration, error) {
	return migrate.Load(migrationFS, "migrations", s.names)
}

// lockKey serialises concurrent migrations of the same table (two relays starting together).
func (s *Store) lockKey() int64 {
	h := fnv.New64a()
	h.Write([]byte("outbox-migrate:" + s.table.String()))
	return int64(h.Sum64())
}

func (s *Store) versionsTable() string { return s.table.Derived("_migrations").Quoted() }

// inMigrationTx runs fn in a transaction holding the migration lock, with the versions table in
// place and the applied versions read.
func (s *Store) inMigrationTx(ctx context.Context, fn func(tx pgx.Tx, applied map[int]time.Time) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockKey()); err != nil {
			return fmt.Errorf("locking migrations: %w", err)
		}
		if s.table.Schema != "" {
			if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS "`+s.table.Schema+`"`); err != nil {
				return fmt.Errorf("creating schema: %w", err)
			}
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+s.versionsTable()+
			` (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("creating migrations table: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT version, applied_at FROM `+s.versionsTable())
		if err != nil {
			return fmt.Errorf("reading applied migrations: %w", err)
		}
		applied := map[int]time.Time{}
		var (
			v  int
			at time.Time
		)
		_, err = pgx.ForEachRow(rows, []any{&v, &at}, func() error { applied[v] = at; return nil })
		if err != nil {
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
	err = s.inMigrationTx(ctx, func(tx pgx.Tx, applied map[int]time.Time) error {
		for _, m := range migrate.Pending(ms, applied) {
			if _, err := tx.Exec(ctx, m.Up); err != nil {
				return fmt.Errorf("applying migration %d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+s.versionsTable()+` (version, name) VALUES ($1, $2)`, m.Version, m.Name); err != nil {
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
	err = s.inMigrationTx(ctx, func(tx pgx.Tx, applied map[int]time.Time) error {
		if len(applied) == 0 {
			return dialect.ErrNoMigrations
		}
		for _, m := range migrate.ToRevert(ms, applied, steps) {
			if _, err := tx.Exec(ctx, m.Down); err != nil {
				return fmt.Errorf("reverting migration %d_%s: %w", m.Version, m.Name, err)
			}
			if _, err := tx.Exec(ctx, `DELETE FROM `+s.versionsTable()+` WHERE version = $1`, m.Version); err != nil {
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

// MigrationStatus implements dialect.Migrator.
func (s *Store) MigrationStatus(ctx context.Context) ([]dialect.MigrationStatus, error) {
	ms, err := s.migrations()
	if err != nil {
		return nil, err
	}
	// A read only: no schema or versions table is created (nothing applied without them).
	applied := map[int]time.Time{}
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, s.versionsTable()).Scan(&exists); err != nil {
		return nil, fmt.Errorf("reading applied migrations: %w", err)
	}
	if exists {
		rows, err := s.pool.Query(ctx, `SELECT version, applied_at FROM `+s.versionsTable())
		if err != nil {
			return nil, fmt.Errorf("reading applied migrations: %w", err)
		}
		var (
			v  int
			at time.Time
		)
		if _, err := pgx.ForEachRow(rows, []any{&v, &at}, func() error { applied[v] = at; return nil }); err != nil {
			return nil, fmt.Errorf("reading applied migrations: %w", err)
		}
	}
	return migrate.Status(ms, applied), nil
}
