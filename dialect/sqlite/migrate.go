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

// MigrationStatus implements dialect.Migrator. A read only: no versions table is created
// (nothing is applied without one).
func (s *Store) MigrationStatus(ctx context.Context) ([]dialect.MigrationStatus, error) {
	return s.migrator().MigrationStatus(ctx)
}

func (s *Store) versionsTable() string { return s.table.Derived("_migrations").Quoted() }

// migrationDriver runs migrations for the loop: a session is one write transaction. SQLite's
// single write lock serialises concurrent migrations (two relays starting together), as the
// advisory lock does in PostgreSQL.
type migrationDriver struct{ s *Store }

// Session implements migrate.Driver.
func (d migrationDriver) Session(ctx context.Context, fn func(migrate.Session) error) error {
	return d.s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+d.s.versionsTable()+
			` (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`); err != nil {
			return fmt.Errorf("creating migrations table: %w", err)
		}
		return fn(migrationSession{tx: tx, versions: d.s.versionsTable()})
	})
}

// Applied implements migrate.Driver.
func (d migrationDriver) Applied(ctx context.Context) (map[int]time.Time, error) {
	var n int
	if err := d.s.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`,
		d.s.table.Derived("_migrations").Name).Scan(&n); err != nil {
		return nil, err
	}
	if n == 0 {
		return map[int]time.Time{}, nil
	}
	return migrate.QueryApplied(ctx, d.s.db, `SELECT version, applied_at FROM `+d.s.versionsTable(), time.UnixMicro)
}

// migrationSession is one migration transaction.
type migrationSession struct {
	tx       *sql.Tx
	versions string
}

// Applied implements migrate.Session.
func (m migrationSession) Applied(ctx context.Context) (map[int]time.Time, error) {
	return migrate.QueryApplied(ctx, m.tx, `SELECT version, applied_at FROM `+m.versions, time.UnixMicro)
}

// Exec implements migrate.Session.
func (m migrationSession) Exec(ctx context.Context, script string) error {
	_, err := m.tx.ExecContext(ctx, script)
	return err
}

// Record implements migrate.Session.
func (m migrationSession) Record(ctx context.Context, mg migrate.Migration) error {
	_, err := m.tx.ExecContext(ctx, `INSERT INTO `+m.versions+` (version, name, applied_at) VALUES (?, ?, ?)`,
		mg.Version, mg.Name, time.Now().UnixMicro())
	return err
}

// Unrecord implements migrate.Session.
func (m migrationSession) Unrecord(ctx context.Context, version int) error {
	_, err := m.tx.ExecContext(ctx, `DELETE FROM `+m.versions+` WHERE version = ?`, version)
	return err
}
