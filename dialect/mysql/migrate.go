package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/migrate"
)

// MigrationLockTimeout is how long MigrateUp and MigrateDown wait for another process's
// migration of the same table (two relays starting together) before failing.
const MigrationLockTimeout = 60 * time.Second

func (s *Store) migrations() ([]migrate.Migration, error) {
	return migrate.LoadBacktick(migrationFS, "migrations", s.names)
}

// lockName names the GET_LOCK lock that serialises migrations of this table. The table is
// qualified with the connection's database when the configuration does not name one; the
// name is hashed to stay within the 64 characters GET_LOCK allows.
func (s *Store) lockName(database string) string {
	h := fnv.New64a()
	h.Write([]byte("outbox-migrate:" + database + "." + s.table.Name))
	return "outbox_migrate_" + strconv.FormatUint(h.Sum64(), 16)
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

// MigrationStatus implements dialect.Migrator. A read only: no database or versions table is
// created, no lock taken (nothing is applied without the table).
func (s *Store) MigrationStatus(ctx context.Context) ([]dialect.MigrationStatus, error) {
	return s.migrator().MigrationStatus(ctx)
}

// migrationDriver runs migrations for the loop. A session is one connection holding the
// migration lock, with the versions table in place.
//
// MySQL commits DDL implicitly, so migrations do not run in a transaction: the lock (a
// session lock, released when the session ends or the connection dies) is what keeps two
// processes from migrating at once, and each statement of a migration is written to be
// re-runnable, so a migration cut short by a crash is simply applied again.
type migrationDriver struct{ s *Store }

// Session implements migrate.Driver.
func (d migrationDriver) Session(ctx context.Context, fn func(migrate.Session) error) error {
	s := d.s
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close()
	if err := s.checkServer(ctx, conn); err != nil {
		return err
	}
	database := s.table.Schema
	if database == "" {
		var cur sql.NullString
		if err := conn.QueryRowContext(ctx, `SELECT DATABASE()`).Scan(&cur); err != nil {
			return fmt.Errorf("reading the current database: %w", err)
		}
		if !cur.Valid {
			return errors.New("no database selected: name one in the DSN or qualify the table (db.outbox)")
		}
		database = cur.String
	} else if err := ensureDatabase(ctx, conn, database); err != nil {
		return err
	}
	wait := MigrationLockTimeout
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, max(time.Until(dl), time.Second))
	}
	name := s.lockName(database)
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, ?)`, name, int(wait.Seconds())).Scan(&got); err != nil {
		return fmt.Errorf("locking migrations: %w", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("locking migrations: another process held lock %s for %v", name, wait)
	}
	defer func() {
		// On a dead connection the server has released the lock already.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, rerr := conn.ExecContext(rctx, `DO RELEASE_LOCK(?)`, name); rerr != nil {
			// Never return a connection to the pool still holding the lock: closing it
			// releases the lock on the server.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+s.names.Versions+` (
    version    INT          NOT NULL PRIMARY KEY,
    name       VARCHAR(255) NOT NULL,
    applied_at DATETIME(6)  NOT NULL DEFAULT (UTC_TIMESTAMP(6))
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`); err != nil {
		return fmt.Errorf("creating migrations table: %w", err)
	}
	return fn(migrationSession{conn: conn, versions: s.names.Versions})
}

// Applied implements migrate.Driver.
func (d migrationDriver) Applied(ctx context.Context) (map[int]time.Time, error) {
	s := d.s
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = COALESCE(NULLIF(?, ''), DATABASE()) AND table_name = ?`,
		s.table.Schema, s.table.Derived("_migrations").Name).Scan(&n); err != nil {
		return nil, err
	}
	if n == 0 {
		return map[int]time.Time{}, nil
	}
	return migrate.QueryApplied(ctx, s.db, `SELECT version, `+micros("applied_at")+` FROM `+s.names.Versions, fromMicros)
}

// migrationSession is one migration session: a connection holding the lock.
type migrationSession struct {
	conn     *sql.Conn
	versions string
}

// Applied implements migrate.Session.
func (m migrationSession) Applied(ctx context.Context) (map[int]time.Time, error) {
	return migrate.QueryApplied(ctx, m.conn, `SELECT version, `+micros("applied_at")+` FROM `+m.versions, fromMicros)
}

// Exec implements migrate.Session: the script's statements one at a time (see execScript).
func (m migrationSession) Exec(ctx context.Context, script string) error {
	return execScript(ctx, m.conn, script)
}

// Record implements migrate.Session.
func (m migrationSession) Record(ctx context.Context, mg migrate.Migration) error {
	_, err := m.conn.ExecContext(ctx, `INSERT INTO `+m.versions+` (version, name) VALUES (?, ?)`, mg.Version, mg.Name)
	return err
}

// Unrecord implements migrate.Session.
func (m migrationSession) Unrecord(ctx context.Context, version int) error {
	_, err := m.conn.ExecContext(ctx, `DELETE FROM `+m.versions+` WHERE version = ?`, version)
	return err
}

// ensureDatabase creates the configured database when it is missing. It looks first, so that
// a user allowed only into an existing database is not refused for lack of CREATE rights.
func ensureDatabase(ctx context.Context, conn *sql.Conn, name string) error {
	var n int
	if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?`, name).Scan(&n); err != nil {
		return fmt.Errorf("looking up database %s: %w", name, err)
	}
	if n > 0 {
		return nil
	}
	if _, err := conn.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		return fmt.Errorf("creating database %s: %w", name, err)
	}
	return nil
}

// checkServer refuses servers without FOR UPDATE SKIP LOCKED (MariaDB before 10.6, MySQL
// before 8) or without expression defaults (MySQL before 8.0.13), with a clear message
// instead of a syntax error at the first claim.
func (s *Store) checkServer(ctx context.Context, conn *sql.Conn) error {
	var version string
	if err := conn.QueryRowContext(ctx, `SELECT VERSION()`).Scan(&version); err != nil {
		return fmt.Errorf("reading server version: %w", err)
	}
	if reason := unsupportedServer(version); reason != "" {
		return fmt.Errorf("server %s is not supported: %s", version, reason)
	}
	return nil
}

// unsupportedServer says why a server of this VERSION() cannot hold the outbox, or "".
func unsupportedServer(version string) string {
	num, _, _ := strings.Cut(version, "-")
	parts := strings.SplitN(num, ".", 3)
	atoi := func(i int) int {
		if i >= len(parts) {
			return 0
		}
		n, _ := strconv.Atoi(parts[i])
		return n
	}
	major, minor, patch := atoi(0), atoi(1), atoi(2)
	if strings.Contains(strings.ToLower(version), "mariadb") {
		if major < 10 || (major == 10 && minor < 6) {
			return "MariaDB 10.6 or later is required (FOR UPDATE SKIP LOCKED)"
		}
		return ""
	}
	if major < 8 || (major == 8 && minor == 0 && patch < 13) {
		return "MySQL 8.0.13 or later is required (FOR UPDATE SKIP LOCKED, expression defaults)"
	}
	return ""
}

// statements splits a migration into its statements: on semicolons outside quotes and
// comments, so that migrations run without the multiStatements connection option.
func statements(script string) []string {
	var (
		out   []string
		cur   strings.Builder
		quote byte // ', " or ` while inside a quoted string or identifier
	)
	flush := func() {
		if st := strings.TrimSpace(cur.String()); st != "" {
			out = append(out, st)
		}
		cur.Reset()
	}
	for i := 0; i < len(script); i++ {
		c := script[i]
		switch {
		case quote != 0:
			cur.WriteByte(c)
			if c == '\\' && quote != '`' && i+1 < len(script) {
				i++
				cur.WriteByte(script[i])
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
			cur.WriteByte(c)
		case c == '#', c == '-' && i+2 <= len(script) && script[i+1] == '-' && (i+2 == len(script) || script[i+2] <= ' '):
			// A comment runs to the end of the line.
			end := strings.IndexByte(script[i:], '\n')
			if end < 0 {
				i = len(script)
			} else {
				i += end - 1
			}
		case c == '/' && strings.HasPrefix(script[i:], "/*"):
			end := strings.Index(script[i+2:], "*/")
			if end < 0 {
				i = len(script)
			} else {
				i += 2 + end + 1
			}
			cur.WriteByte(' ')
		case c == ';':
			flush()
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return out
}

// execScript runs a migration's statements. MySQL has no ADD COLUMN IF NOT EXISTS (MariaDB
// has), so a column that exists already (1060) or is gone already (1091) is taken as the
// statement done: a migration cut short re-runs cleanly.
func execScript(ctx context.Context, conn *sql.Conn, script string) error {
	for _, st := range statements(script) {
		if _, err := conn.ExecContext(ctx, st); err != nil {
			var me *mysql.MySQLError
			if errors.As(err, &me) && (me.Number == 1060 || me.Number == 1091) {
				continue
			}
			return err
		}
	}
	return nil
}
