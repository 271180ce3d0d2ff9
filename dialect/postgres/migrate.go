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

// migrator is the shared migration loop over this store's driver.
func (s *Store) migrator() migrate.Runner {
	return migrate.Runner{Load: s.migrations, Driver: migrationDriver{s}}
}

// MigrateUp implements dialect.Migrator.
func (s *Store) MigrateUp(ctx context.Context) ([]int, error) { return s.migrator().MigrateUp(ctx) }

// MigrateDown implements dialect.Migrator.
func (s *Store) MigrateDown(ctx context.Context, steps int) ([]int, error) {
	return s.migrator().MigrateDown(ctx, steps)
}

// MigrationStatus implements dialect.Migrator. A read only: no schema or versions table is
// created (nothing is applied without them).
func (s *Store) MigrationStatus(ctx context.Context) ([]dialect.MigrationStatus, error) {
	return s.migrator().MigrationStatus(ctx)
}

// lockKey serialises concurrent migrations of the same table (two relays starting together).
func (s *Store) lockKey() int64 {
	h := fnv.New64a()
	h.Write([]byte("outbox-migrate:" + s.table.String()))
	return int64(h.Sum64())
}

func (s *Store) versionsTable() string { return s.table.Derived("_migrations").Quoted() }

// migrationDriver runs migrations for the loop: a session is one transaction (PostgreSQL's
// DDL is transactional) holding an advisory lock.
type migrationDriver struct{ s *Store }

// Session implements migrate.Driver.
func (d migrationDriver) Session(ctx context.Context, fn func(migrate.Session) error) error {
	s := d.s
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
		return fn(migrationSession{tx: tx, versions: s.versionsTable()})
	})
}

// Applied implements migrate.Driver.
func (d migrationDriver) Applied(ctx context.Context) (map[int]time.Time, error) {
	var exists bool
	if err := d.s.pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, d.s.versionsTable()).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return map[int]time.Time{}, nil
	}
	rows, err := d.s.pool.Query(ctx, `SELECT version, applied_at FROM `+d.s.versionsTable())
	return readApplied(rows, err)
}

// migrationSession is one migration transaction.
type migrationSession struct {
	tx       pgx.Tx
	versions string
}

// Applied implements migrate.Session.
func (m migrationSession) Applied(ctx context.Context) (map[int]time.Time, error) {
	rows, err := m.tx.Query(ctx, `SELECT version, applied_at FROM `+m.versions)
	return readApplied(rows, err)
}

// Exec implements migrate.Session.
func (m migrationSession) Exec(ctx context.Context, script string) error {
	_, err := m.tx.Exec(ctx, script)
	return err
}

// Record implements migrate.Session.
func (m migrationSession) Record(ctx context.Context, mg migrate.Migration) error {
	_, err := m.tx.Exec(ctx, `INSERT INTO `+m.versions+` (version, name) VALUES ($1, $2)`, mg.Version, mg.Name)
	return err
}

// Unrecord implements migrate.Session.
func (m migrationSession) Unrecord(ctx context.Context, version int) error {
	_, err := m.tx.Exec(ctx, `DELETE FROM `+m.versions+` WHERE version = $1`, version)
	return err
}

// readApplied reads the rows of a query of (version, applied_at).
func readApplied(rows pgx.Rows, err error) (map[int]time.Time, error) {
	if err != nil {
		return nil, err
	}
	applied := map[int]time.Time{}
	var (
		v  int
		at time.Time
	)
	if _, err := pgx.ForEachRow(rows, []any{&v, &at}, func() error { applied[v] = at; return nil }); err != nil {
		return nil, err
	}
	return applied, nil
}
