package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	sqlitedrv "modernc.org/sqlite" // also registers the "sqlite" database/sql driver

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/migrate"
	"github.com/outboxgo/outbox/internal/sqlident"
	"github.com/outboxgo/outbox/internal/sqlscan"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DriverName is the database/sql driver the store uses (modernc.org/sqlite, pure Go).
const DriverName = "sqlite"

// BusyTimeout is how long a connection the store opens waits for SQLite's single write lock
// before failing with SQLITE_BUSY.
const BusyTimeout = 10 * time.Second

// Config configures a Store.
type Config struct {
	// DB is the database to use. The Store does not close a DB it was given. Open it with
	// DSNParams (or equivalent settings) so that write transactions wait for the write lock
	// instead of failing.
	DB *sql.DB
	// Path is the database file, used when DB is nil. The Store opens it in WAL mode with a
	// busy timeout of BusyTimeout and _txlock=immediate, and creates it if missing.
	Path string
	// Table is the outbox table. SQLite has no schemas, so the name cannot be qualified.
	// Default "outbox".
	Table string
	// Logger receives diagnostics. Default slog.Default().
	Logger *slog.Logger
	// WatchInterval is how often Listen (the relay's commit notifications) reads PRAGMA
	// data_version to notice commits made outside the Store's own connections: by another
	// process, the sqlite3 shell, or a DB given in DB. Commits through the connections of a
	// Store opened with Path wake the relay at once whatever this is. Default
	// DefaultWatchInterval; negative turns the periodic read off.
	WatchInterval time.Duration
}

// Store is a SQLite outbox. It implements dialect.Store.
//
// Claims are coordinated inside the Store (see the package documentation): use one Store per
// database file and process for relaying.
type Store struct {
	db     *sql.DB
	ownDB  bool
	table  sqlident.Table
	names  migrate.Names
	writer *outbox.Writer
	logger *slog.Logger
	q      queries

	// mu orders claim scans against claim finishes, so a scan never sees a finished claim's
	// rows as both unheld and not yet updated. Always taken before a connection, never while
	// holding one, so a DB limited to one connection cannot deadlock.
	mu   sync.Mutex
	held holds

	path          string // the file, when the Store opened it
	signals       commitSignals
	watchInterval time.Duration
}

var _ dialect.Store = (*Store)(nil)

// DSNParams are the query parameters the Store adds to Path: WAL journal (readers never wait
// for the writer), a busy timeout (writers queue for the single write lock) and immediate
// transactions (a write transaction takes the lock at BEGIN, so it never fails halfway when
// upgrading from a read lock).
const DSNParams = "_journal_mode=WAL&_busy_timeout=10000&_txlock=immediate"

// DSN returns the data source name the Store opens for a database file.
func DSN(path string) string { return fileURI(path) + "?" + DSNParams }

// fileURI returns path as a file: URI without a query.
func fileURI(path string) string {
	// A file: URI keeps '?' and '#' in the path from being read as the query or fragment.
	r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	return "file:" + r.Replace(path)
}

// New validates cfg, opens the database if cfg.DB is nil, and returns a Store. It does not
// create tables: call MigrateUp.
func New(ctx context.Context, cfg Config) (*Store, error) {
	cfg.Table = cmp.Or(cfg.Table, outbox.DefaultTable)
	t, err := sqlident.Parse(cfg.Table)
	if err != nil {
		return nil, &outbox.ConfigError{Field: "table", Reason: err.Error()}
	}
	if t.Schema != "" {
		return nil, &outbox.ConfigError{Field: "table", Reason: fmt.Sprintf("%q: SQLite tables cannot be schema-qualified", cfg.Table)}
	}
	if strings.HasPrefix(strings.ToLower(t.Name), "sqlite_") {
		return nil, &outbox.ConfigError{Field: "table", Reason: fmt.Sprintf("%q: names starting with sqlite_ are reserved by SQLite", cfg.Table)}
	}
	w, err := outbox.NewWriter(outbox.WriterConfig{Dialect: outbox.SQLite, Table: cfg.Table})
	if err != nil {
		return nil, err
	}
	s := &Store{
		table:  t,
		names:  migrate.NamesFor(t),
		writer: w,
		logger: cmp.Or(cfg.Logger, slog.Default()),
		held:   holds{ids: map[int64]struct{}{}, keys: map[string]int{}},

		watchInterval: cmp.Or(cfg.WatchInterval, DefaultWatchInterval),
	}
	s.q = buildQueries(s.names)
	switch {
	case cfg.DB != nil:
		s.db = cfg.DB
	case cfg.Path == ":memory:" || strings.HasPrefix(cfg.Path, "file::memory:"):
		// Every pooled connection would get its own empty database.
		return nil, &outbox.ConfigError{Field: "path", Reason: "an in-memory database cannot be shared by the store's connections; use a file (in a temporary directory for tests)"}
	case cfg.Path != "":
		c, err := sqlitedrv.NewConnector(DSN(cfg.Path))
		if err != nil {
			return nil, fmt.Errorf("opening sqlite database: %w", err)
		}
		// The hooks signal commits that inserted messages to Listen (see notify.go).
		db := sql.OpenDB(&hookConnector{Connector: c, table: t.Name, signals: &s.signals})
		if err := db.PingContext(ctx); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("opening sqlite database %s: %w", cfg.Path, err)
		}
		s.db, s.ownDB, s.path = db, true, cfg.Path
	default:
		return nil, &outbox.ConfigError{Field: "path", Reason: "required (or a DB)"}
	}
	return s, nil
}

// DB returns the store's database. Business transactions that enqueue with Writer use it.
func (s *Store) DB() *sql.DB { return s.db }

// Writer returns the outbox.Writer for this store's table, for use in business transactions.
func (s *Store) Writer() *outbox.Writer { return s.writer }

// Dialect implements dialect.Claimer and dialect.Admin.
func (s *Store) Dialect() outbox.Dialect { return outbox.SQLite }

// Close closes the database if the Store opened it.
func (s *Store) Close() error {
	if s.ownDB {
		return s.db.Close()
	}
	return nil
}

type queries struct {
	scan, fetch                       string
	del, markPublished, retry, toDead string
	delOne, salvage, toDeadSalvaged   string
	heartbeat, expire, members, leave string
	deletePublished, stats            string
	duplicates, topics                string
	deadList, deadRetry, deadRemove   string
	deadIDs                           string
}

// idsIn matches a JSON array of ids bound as a parameter: one statement whatever the count,
// like unnest in PostgreSQL.
const idsIn = `(SELECT value FROM json_each(?))`

func buildQueries(n migrate.Names) queries {
	const cols = "id, message_id, topic, key, type, payload, headers, created_at, attempts"
	return queries{
		// Only what choosing needs; payloads are read for the chosen rows only. behind is set
		// when an earlier unpublished message of the key is in backoff: ?1 is now.
		scan: `SELECT id, key, message_id, topic, length(payload), key IS NOT NULL AND EXISTS (
    SELECT 1 FROM ` + n.Table + ` e
    WHERE e.key = t.key AND e.id < t.id AND e.published_at IS NULL AND e.available_at > ?1) AS behind
FROM ` + n.Table + ` t
WHERE published_at IS NULL AND available_at <= ?1
  AND (key IS NULL OR key NOT IN (SELECT value FROM json_each(?2)))
ORDER BY id`,
		fetch:         `SELECT ` + cols + ` FROM ` + n.Table + ` WHERE id IN ` + idsIn + ` ORDER BY id`,
		del:           `DELETE FROM ` + n.Table + ` WHERE id IN ` + idsIn,
		markPublished: `UPDATE ` + n.Table + ` SET published_at = ? WHERE id IN ` + idsIn,
		// ?1 available_at, ?2 the error, ?3 the row, ?4 attempts to add (0: not attempted),
		// ?5 now.
		retry:      `UPDATE ` + n.Table + ` SET attempts = attempts + ?4, available_at = ?1, last_error = ?2, last_error_at = ?5 WHERE id = ?3`,
		duplicates: `UPDATE ` + n.Sibling("_counters") + ` SET value = value + ? WHERE name = 'broker_duplicates'`,
		topics:     topicsQuery(n.Table),
		toDead: `INSERT INTO ` + n.Dead + ` (original_id, message_id, topic, key, type, payload, headers, created_at, attempts, last_error, failed_at)
SELECT id, message_id, topic, key, type, payload, headers, created_at, attempts + 1, ?, ? FROM ` + n.Table + ` WHERE id = ?`,
		delOne: `DELETE FROM ` + n.Table + ` WHERE id = ?`,
		// The columns toDeadSalvaged does not copy, as text (for the reason).
		salvage: `SELECT coalesce(CAST(message_id AS TEXT), 'NULL'), coalesce(CAST(headers AS TEXT), 'NULL'),
  coalesce(CAST(created_at AS TEXT), 'NULL'), coalesce(CAST(attempts AS TEXT), 'NULL') FROM ` + n.Table + ` WHERE id = ?`,
		// ?1 the placeholder message_id, ?2 the reason, ?3 now, ?4 the row.
		toDeadSalvaged: `INSERT INTO ` + n.Dead + ` (original_id, message_id, topic, key, type, payload, headers, created_at, attempts, last_error, failed_at)
SELECT id, ?1, CAST(topic AS TEXT), CAST(key AS TEXT), CAST(type AS TEXT), CAST(payload AS BLOB), '{}', ?3, 0, ?2, ?3 FROM ` + n.Table + ` WHERE id = ?4`,
		heartbeat: `INSERT INTO ` + n.Relays + ` (relay_id, grp, heartbeat_at) VALUES (?1, ?3, ?2)
ON CONFLICT (relay_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, grp = excluded.grp`,
		expire:  `DELETE FROM ` + n.Relays + ` WHERE heartbeat_at < ?`,
		members: `SELECT relay_id FROM ` + n.Relays + ` WHERE grp = ? ORDER BY relay_id`,
		leave:   `DELETE FROM ` + n.Relays + ` WHERE relay_id = ?`,
		deletePublished: `DELETE FROM ` + n.Table + ` WHERE id IN (SELECT id FROM ` + n.Table + `
WHERE published_at IS NOT NULL AND published_at <= ? ORDER BY published_at LIMIT ?)`,
		stats: `SELECT
  (SELECT count(*) FROM ` + n.Table + ` WHERE published_at IS NULL),
  (SELECT count(*) FROM ` + n.Table + ` WHERE published_at IS NULL AND available_at <= ?1),
  (SELECT count(*) FROM ` + n.Table + ` WHERE published_at IS NULL AND attempts > 0),
  (SELECT coalesce(?1 - min(created_at), 0) FROM ` + n.Table + ` WHERE published_at IS NULL),
  (SELECT count(*) FROM ` + n.Dead + `),
  (SELECT count(*) FROM ` + n.Relays + ` WHERE heartbeat_at >= ?2),
  coalesce((SELECT value FROM ` + n.Sibling("_counters") + ` WHERE name = 'broker_duplicates'), 0)`,
		deadList: `SELECT id, original_id, message_id, topic, key, type, payload, headers, created_at, attempts, last_error, failed_at
FROM ` + n.Dead + ` WHERE id > ? ORDER BY id LIMIT ?`,
		deadIDs: `SELECT id FROM ` + n.Dead + ` WHERE id > ? ORDER BY id LIMIT ?`,
		// ?1 NULL means every dead letter; ?2 is now (the retried rows are available at once).
		deadRetry: `INSERT INTO ` + n.Table + ` (message_id, topic, key, type, payload, headers, created_at, available_at)
SELECT message_id, topic, key, type, payload, headers, created_at, ?2 FROM ` + n.Dead + `
WHERE ?1 IS NULL OR id IN (SELECT value FROM json_each(?1)) ORDER BY id`,
		deadRemove: `DELETE FROM ` + n.Dead + ` WHERE ?1 IS NULL OR id IN (SELECT value FROM json_each(?1))`,
	}
}

// jsonIDs encodes ids for json_each; nil stays NULL ("all" where a query allows it).
func jsonIDs(ids []int64) any {
	if ids == nil {
		return nil
	}
	b, _ := json.Marshal(ids) // []int64 always marshals
	return string(b)
}

// inTx runs fn in a write transaction. On a Store-opened database BEGIN takes the write lock
// (waiting up to the busy timeout), so the statements inside never fail on lock upgrades.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("beginning transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("committing: %w", err)
	}
	return nil
}

// Enqueue implements dialect.Admin.
func (s *Store) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		return s.writer.Enqueue(ctx, tx, msgs...)
	})
}

// Heartbeat implements dialect.Claimer.
func (s *Store) Heartbeat(ctx context.Context, relayID, group string, ttl time.Duration) (dialect.Membership, error) {
	now := time.Now().UnixMicro()
	var ids []string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.q.heartbeat, relayID, now, group); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q.expire, now-ttl.Microseconds()); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, s.q.members, group)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	if err != nil {
		return dialect.Membership{}, fmt.Errorf("heartbeat: %w", err)
	}
	m, err := dialect.MembershipOf(ids, relayID)
	if err != nil {
		return m, fmt.Errorf("heartbeat: %w", err)
	}
	return m, nil
}

// Leave implements dialect.Claimer.
func (s *Store) Leave(ctx context.Context, relayID string) error {
	if _, err := s.db.ExecContext(ctx, s.q.leave, relayID); err != nil {
		return fmt.Errorf("leaving: %w", err)
	}
	return nil
}

// DeletePublished implements dialect.Claimer.
func (s *Store) DeletePublished(ctx context.Context, retention time.Duration, limit int) (int64, error) {
	cutoff := time.Now().UnixMicro() - retention.Microseconds()
	res, err := s.db.ExecContext(ctx, s.q.deletePublished, cutoff, limit)
	if err != nil {
		return 0, fmt.Errorf("deleting published rows: %w", err)
	}
	return res.RowsAffected()
}

// Stats implements dialect.Admin.
func (s *Store) Stats(ctx context.Context) (dialect.Stats, error) {
	var (
		st       dialect.Stats
		oldestUS int64
	)
	now := time.Now()
	err := s.db.QueryRowContext(ctx, s.q.stats, now.UnixMicro(), now.Add(-time.Minute).UnixMicro()).
		Scan(&st.Pending, &st.Ready, &st.Retrying, &oldestUS, &st.DeadLetters, &st.Relays, &st.BrokerDuplicates)
	if err != nil {
		return st, fmt.Errorf("reading stats: %w", err)
	}
	if st.Topics, err = dialect.ScanTopics(s.db.QueryContext(ctx, s.q.topics)); err != nil { //nolint:rowserrcheck // ScanTopics returns rows.Err
		return st, fmt.Errorf("reading stats: %w", err)
	}
	st.OldestPending = max(time.Duration(oldestUS)*time.Microsecond, 0)
	return st, nil
}

// DeadLetters implements dialect.Admin.
// DeadLetterIDs implements dialect.DeadLetterIDLister.
func (s *Store) DeadLetterIDs(ctx context.Context, afterID int64, limit int) ([]int64, error) {
	ids, err := sqlscan.Int64s(ctx, s.db, s.q.deadIDs, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("listing dead letter ids: %w", err)
	}
	return ids, nil
}

func (s *Store) DeadLetters(ctx context.Context, afterID int64, limit int) ([]dialect.DeadLetter, error) {
	rows, err := s.db.QueryContext(ctx, s.q.deadList, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("listing dead letters: %w", err)
	}
	defer rows.Close()
	var out []dialect.DeadLetter
	for rows.Next() {
		var (
			d        dialect.DeadLetter
			raw      dialect.RawRow
			failedUS int64
		)
		if err := rows.Scan(&d.ID, &raw.Seq, &raw.MessageID, &raw.Topic, &raw.Key, &raw.Type, &raw.Payload, &raw.Headers, &raw.CreatedAt, &raw.Attempts, &d.LastError, &failedUS); err != nil {
			return nil, fmt.Errorf("listing dead letters: %w", err)
		}
		// A row dead-lettered because it was unreadable still lists, with what could be
		// read; its error says why.
		d.Record, _ = dialect.DecodeRow(raw)
		d.FailedAt = time.UnixMicro(failedUS)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing dead letters: %w", err)
	}
	return out, nil
}

// RetryDeadLetters implements dialect.Admin.
func (s *Store) RetryDeadLetters(ctx context.Context, ids []int64) (int64, error) {
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, s.q.deadRetry, jsonIDs(ids), time.Now().UnixMicro())
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		// The write lock is held: the rows just copied are exactly the ones removed.
		_, err = tx.ExecContext(ctx, s.q.deadRemove, jsonIDs(ids))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("retrying dead letters: %w", err)
	}
	return n, nil
}

// PurgeDeadLetters implements dialect.Admin.
func (s *Store) PurgeDeadLetters(ctx context.Context, ids []int64) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.q.deadRemove, jsonIDs(ids))
	if err != nil {
		return 0, fmt.Errorf("purging dead letters: %w", err)
	}
	return res.RowsAffected()
}

// topicsQuery lists, per topic with failing unpublished rows (last_error set), how many there
// are and the error written last, at most 100 topics, most failing first. Rows failed before
// last_error_at existed count, and sort before none.
func topicsQuery(table string) string {
	return `SELECT f.topic, f.n, (SELECT e.last_error FROM ` + table + ` e
    WHERE e.topic = f.topic AND e.published_at IS NULL AND e.last_error IS NOT NULL
    ORDER BY e.last_error_at DESC, e.id DESC LIMIT 1)
FROM (SELECT topic, count(*) AS n FROM ` + table + ` WHERE published_at IS NULL AND last_error IS NOT NULL
    GROUP BY topic ORDER BY n DESC, topic LIMIT 100) f
ORDER BY f.n DESC, f.topic`
}
