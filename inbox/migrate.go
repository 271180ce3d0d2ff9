package inbox

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/migrate"
)

//go:embed migrations
var migrationFS embed.FS

func (in *Inbox) migrations() ([]migrate.Migration, error) {
	switch in.cfg.Dialect {
	case outbox.MySQL:
		return migrate.LoadBacktick(migrationFS, "migrations/mysql", migrate.BacktickNamesFor(in.table))
	case outbox.SQLite:
		return migrate.Load(migrationFS, "migrations/sqlite", migrate.NamesFor(in.table))
	default:
		return migrate.Load(migrationFS, "migrations/postgres", migrate.NamesFor(in.table))
	}
}

func (in *Inbox) migrator() migrate.Runner {
	return migrate.Runner{Load: in.migrations, Driver: migrationDriver{in}}
}

// MigrateUp creates or upgrades the inbox's tables and returns the versions applied.
// Concurrent calls for one table are serialised.
func (in *Inbox) MigrateUp(ctx context.Context) ([]int, error) { return in.migrator().MigrateUp(ctx) }

// MigrateDown reverts the most recent steps migrations (all when steps <= 0), dropping the
// tables with the last one, and returns the versions reverted.
func (in *Inbox) MigrateDown(ctx context.Context, steps int) ([]int, error) {
	return in.migrator().MigrateDown(ctx, steps)
}

// MigrationStatus lists every migration and whether it is applied. It creates nothing.
func (in *Inbox) MigrationStatus(ctx context.Context) ([]dialect.MigrationStatus, error) {
	return in.migrator().MigrationStatus(ctx)
}

func (in *Inbox) versionsTable() string {
	t := in.table.Derived("_migrations")
	if in.cfg.Dialect == outbox.MySQL {
		return t.QuotedMySQL()
	}
	return t.Quoted()
}

func (in *Inbox) lockKey() int64 {
	h := fnv.New64a()
	h.Write([]byte("outbox-inbox-migrate:" + in.table.String()))
	return int64(h.Sum64())
}

func (in *Inbox) placeholders(q string) string {
	if in.cfg.Dialect == outbox.Postgres {
		return dollars(q)
	}
	return q
}

// migrationDriver runs the migrations. PostgreSQL and SQLite run a session in one
// transaction (their DDL is transactional), under an advisory lock in PostgreSQL and the
// write lock in SQLite. MySQL commits DDL implicitly: a session is one connection holding a
// GET_LOCK lock, and every statement of its migrations is re-runnable (IF NOT EXISTS).
type migrationDriver struct{ in *Inbox }

// Session implements migrate.Driver.
func (d migrationDriver) Session(ctx context.Context, fn func(migrate.Session) error) error {
	in := d.in
	create := `CREATE TABLE IF NOT EXISTS ` + in.versionsTable() + ` (version INTEGER PRIMARY KEY, name VARCHAR(255) NOT NULL, applied_at BIGINT NOT NULL)`
	if in.cfg.Dialect == outbox.MySQL {
		return d.mysqlSession(ctx, create, fn)
	}
	return in.db.inTx(ctx, func(r runner) error {
		if in.cfg.Dialect == outbox.Postgres {
			if _, err := r.exec(ctx, `SELECT pg_advisory_xact_lock($1)`, in.lockKey()); err != nil {
				return fmt.Errorf("locking migrations: %w", err)
			}
			if in.table.Schema != "" {
				if _, err := r.exec(ctx, `CREATE SCHEMA IF NOT EXISTS "`+in.table.Schema+`"`); err != nil {
					return fmt.Errorf("creating schema: %w", err)
				}
			}
		}
		if _, err := r.exec(ctx, create); err != nil {
			return fmt.Errorf("creating migrations table: %w", err)
		}
		return fn(migrationSession{in: in, r: r})
	})
}

func (d migrationDriver) mysqlSession(ctx context.Context, create string, fn func(migrate.Session) error) error {
	in := d.in
	conn, err := in.cfg.DB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close()
	name := "outbox_inbox_migrate_" + strconv.FormatUint(uint64(in.lockKey()), 16)
	var got *int64
	if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, 60)`, name).Scan(&got); err != nil {
		return fmt.Errorf("locking migrations: %w", err)
	}
	if got == nil || *got != 1 {
		return fmt.Errorf("locking migrations: lock %s held by another process", name)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = conn.ExecContext(rctx, `DO RELEASE_LOCK(?)`, name)
	}()
	r := sqlRunner{conn}
	if _, err := r.exec(ctx, create); err != nil {
		return fmt.Errorf("creating migrations table: %w", err)
	}
	return fn(migrationSession{in: in, r: r})
}

// Applied implements migrate.Driver.
func (d migrationDriver) Applied(ctx context.Context) (map[int]time.Time, error) {
	in := d.in
	var exists bool
	var err error
	switch in.cfg.Dialect {
	case outbox.MySQL:
		var n int
		err = in.db.queryRow(ctx, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = COALESCE(NULLIF(?, ''), DATABASE()) AND table_name = ?`,
			in.table.Schema, in.table.Derived("_migrations").Name).Scan(&n)
		exists = n > 0
	case outbox.SQLite:
		var n int
		err = in.db.queryRow(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, in.table.Derived("_migrations").Name).Scan(&n)
		exists = n > 0
	default:
		err = in.db.queryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, in.versionsTable()).Scan(&exists)
	}
	if err != nil {
		return nil, err
	}
	if !exists {
		return map[int]time.Time{}, nil
	}
	return migrationSession{in: in, r: in.db}.Applied(ctx)
}

type migrationSession struct {
	in *Inbox
	r  runner
}

// Applied implements migrate.Session.
func (m migrationSession) Applied(ctx context.Context) (map[int]time.Time, error) {
	applied := map[int]time.Time{}
	err := m.r.query(ctx, `SELECT version, applied_at FROM `+m.in.versionsTable(), nil, func(scan func(...any) error) error {
		var (
			v  int
			at int64
		)
		if err := scan(&v, &at); err != nil {
			return err
		}
		applied[v] = fromMicros(at)
		return nil
	})
	return applied, err
}

// Exec implements migrate.Session. MySQL runs one statement at a time (the driver refuses
// several without multiStatements): the scripts end each statement with ";" at a line end.
func (m migrationSession) Exec(ctx context.Context, script string) error {
	if m.in.cfg.Dialect != outbox.MySQL {
		_, err := m.r.exec(ctx, script)
		return err
	}
	for stmt := range strings.SplitSeq(script, ";\n") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := m.r.exec(ctx, stmt); err != nil {
			return err
		}
	}
	return nil
}

// Record implements migrate.Session.
func (m migrationSession) Record(ctx context.Context, mg migrate.Migration) error {
	_, err := m.r.exec(ctx, m.in.placeholders(`INSERT INTO `+m.in.versionsTable()+` (version, name, applied_at) VALUES (?, ?, ?)`),
		mg.Version, mg.Name, micros(time.Now()))
	return err
}

// Unrecord implements migrate.Session.
func (m migrationSession) Unrecord(ctx context.Context, version int) error {
	_, err := m.r.exec(ctx, m.in.placeholders(`DELETE FROM `+m.in.versionsTable()+` WHERE version = ?`), version)
	return err
}
