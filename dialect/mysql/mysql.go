package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/migrate"
	"github.com/outboxgo/outbox/internal/sqlident"
	"github.com/outboxgo/outbox/internal/sqlscan"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// DefaultMaxConns bounds the pool a Store opens from a DSN.
const DefaultMaxConns = 10

// Config configures a Store.
type Config struct {
	// DB is the database to use. The Store does not close a DB it was given. Its connections
	// must use the utf8mb4 character set (the driver's default); the store depends on no
	// other connection setting (it reads times as integers, so parseTime and loc do not
	// matter, and it runs one statement per call, so multiStatements is not needed).
	DB *sql.DB
	// DSN is a github.com/go-sql-driver/mysql data source name, used when DB is nil:
	// "user:password@tcp(127.0.0.1:3306)/dbname?param=value". The store adds parseTime=true,
	// for callers that use DB() with time.Time, and the connection attribute
	// program_name=ProgramName unless connectionAttributes sets one. Add
	// interpolateParams=true to save a round trip per statement.
	DSN string
	// MaxConns bounds the pool the Store opens from DSN. Default DefaultMaxConns. Each open
	// claim holds a connection (its transaction) while its batch is published.
	MaxConns int
	// Table is the outbox table, optionally qualified with its database ("shop.outbox").
	// Default "outbox", in the DSN's database.
	Table string
	// Logger receives diagnostics. Default slog.Default().
	Logger *slog.Logger
}

// ProgramName is the program_name connection attribute of the sessions a Store opens from a
// DSN that sets none.
const ProgramName = "outbox-relay"

// Store is a MySQL or MariaDB outbox. It implements dialect.Store, and dialect.HeldWriter for
// the binlog source (relay/binlog).
type Store struct {
	db     *sql.DB
	ownDB  bool
	table  sqlident.Table
	names  migrate.BacktickNames
	writer *outbox.Writer
	logger *slog.Logger
	q      queries
}

var _ dialect.Store = (*Store)(nil)

// New validates cfg and returns a Store. It does not connect (the pool connects on first use)
// and does not create tables: call MigrateUp.
func New(ctx context.Context, cfg Config) (*Store, error) {
	_ = ctx // reserved: connecting is lazy, as with database/sql
	cfg.Table = cmp.Or(cfg.Table, outbox.DefaultTable)
	t, err := sqlident.Parse(cfg.Table)
	if err != nil {
		return nil, &outbox.ConfigError{Field: "table", Reason: err.Error()}
	}
	if cfg.MaxConns < 0 {
		return nil, &outbox.ConfigError{Field: "max_conns", Reason: "must not be negative"}
	}
	w, err := outbox.NewWriter(outbox.WriterConfig{Dialect: outbox.MySQL, Table: cfg.Table})
	if err != nil {
		return nil, err
	}
	s := &Store{
		table:  t,
		names:  migrate.BacktickNamesFor(t),
		writer: w,
		logger: cmp.Or(cfg.Logger, slog.Default()),
	}
	s.q = buildQueries(s.names)
	switch {
	case cfg.DB != nil:
		s.db = cfg.DB
	case cfg.DSN != "":
		mcfg, err := mysql.ParseDSN(cfg.DSN)
		if err != nil {
			return nil, &outbox.ConfigError{Field: "database_url", Reason: err.Error()}
		}
		if mcfg.DBName == "" && t.Schema == "" {
			return nil, &outbox.ConfigError{Field: "database_url",
				Reason: fmt.Sprintf("names no database: add /dbname to it or qualify the table (dbname.%s)", t.Name)}
		}
		mcfg.ParseTime = true
		if !strings.Contains(mcfg.ConnectionAttributes, "program_name:") {
			// Names the sessions (performance_schema.session_connect_attrs); a DSN that
			// sets program_name wins.
			mcfg.ConnectionAttributes = strings.TrimPrefix(mcfg.ConnectionAttributes+",program_name:"+ProgramName, ",")
		}
		conn, err := mysql.NewConnector(mcfg)
		if err != nil {
			return nil, &outbox.ConfigError{Field: "database_url", Reason: err.Error()}
		}
		db := sql.OpenDB(conn)
		n := cmp.Or(cfg.MaxConns, DefaultMaxConns)
		db.SetMaxOpenConns(n)
		// Keep what the relay's workers use: the default of 2 idle connections would close
		// and reopen connections on every claim of a busy relay.
		db.SetMaxIdleConns(n)
		db.SetConnMaxIdleTime(5 * time.Minute)
		s.db, s.ownDB = db, true
	default:
		return nil, &outbox.ConfigError{Field: "database_url", Reason: "required (or a DB)"}
	}
	return s, nil
}

// DB returns the store's database. Business transactions that enqueue with Writer use it.
func (s *Store) DB() *sql.DB { return s.db }

// Writer returns the outbox.Writer for this store's table, for use in business transactions.
func (s *Store) Writer() *outbox.Writer { return s.writer }

// Dialect implements dialect.Claimer and dialect.Admin.
func (s *Store) Dialect() outbox.Dialect { return outbox.MySQL }

// Close closes the database if the Store opened it.
func (s *Store) Close() error {
	if s.ownDB {
		return s.db.Close()
	}
	return nil
}

// micros renders a DATETIME(6) column as microseconds since the Unix epoch. Times are read
// as integers so that the result does not depend on the connection's parseTime and loc.
func micros(col string) string {
	return "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', " + col + ")"
}

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// keyHash is the partition hash of a row: CRC32 of its key's UTF-8 bytes, or of its
// message_id when it has no key. Non-negative, so MOD yields 0..n-1.
const keyHash = "CRC32(COALESCE(`key`, message_id))"

type queries struct {
	cols                       string // the columns scanRecord reads
	firstPending               string
	orderCheck                 string // + id list + ") GROUP BY c.id"
	heartbeat, expire, members string
	leave, expired, stats      string
	deadList, deadIDs          string
	duplicates, topics         string
}

func buildQueries(n migrate.BacktickNames) queries {
	return queries{
		cols:         "id, message_id, topic, `key`, type, payload, headers, " + micros("created_at") + ", attempts",
		firstPending: "SELECT MIN(id) FROM " + n.Table + " FORCE INDEX (pending_idx) WHERE published_at IS NULL",
		// For the last claimed row of each key: how many unpublished rows of its key exist up
		// to it. If that exceeds what the claim holds of the key, an earlier row is held
		// elsewhere or backing off. until is the latest available_at among them: when a
		// backing-off head is due again. The key prefix index finds the rows; the length
		// check makes the comparison exact (utf8mb4_bin ignores trailing spaces).
		orderCheck: "SELECT c.id, COUNT(*), MAX(" + micros("e.available_at") + ") FROM " + n.Table + " c JOIN " + n.Table + " e" +
			" ON e.`key` = c.`key` AND LENGTH(e.`key`) = LENGTH(c.`key`) AND e.id <= c.id AND e.published_at IS NULL" +
			" WHERE c.id IN (",
		heartbeat: "INSERT INTO " + n.Relays + " (relay_id, grp, heartbeat_at) VALUES (?, ?, UTC_TIMESTAMP(6))" +
			" ON DUPLICATE KEY UPDATE grp = ?, heartbeat_at = UTC_TIMESTAMP(6)",
		expire:  "DELETE FROM " + n.Relays + " WHERE heartbeat_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND AND relay_id <> ?",
		members: "SELECT relay_id FROM " + n.Relays + " WHERE grp = ? ORDER BY relay_id",
		leave:   "DELETE FROM " + n.Relays + " WHERE relay_id = ?",
		// The oldest published rows, from the pending index: a plain read that locks nothing.
		expired: "SELECT id FROM " + n.Table + " FORCE INDEX (pending_idx) WHERE published_at IS NOT NULL" +
			" AND published_at <= UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND ORDER BY published_at, id LIMIT ?",
		stats: `SELECT
  (SELECT COUNT(*) FROM ` + n.Table + ` WHERE published_at IS NULL),
  (SELECT COUNT(*) FROM ` + n.Table + ` WHERE published_at IS NULL AND available_at <= UTC_TIMESTAMP(6)),
  (SELECT COUNT(*) FROM ` + n.Table + ` WHERE published_at IS NULL AND attempts > 0),
  (SELECT COALESCE(TIMESTAMPDIFF(MICROSECOND, MIN(created_at), UTC_TIMESTAMP(6)), 0) FROM ` + n.Table + ` WHERE published_at IS NULL),
  (SELECT COUNT(*) FROM ` + n.Dead + `),
  (SELECT COUNT(*) FROM ` + n.Relays + ` WHERE heartbeat_at >= UTC_TIMESTAMP(6) - INTERVAL 1 MINUTE),
  COALESCE((SELECT value FROM ` + n.Sibling("_counters") + ` WHERE name = 'broker_duplicates'), 0)`,
		duplicates: "UPDATE " + n.Sibling("_counters") + " SET value = value + ? WHERE name = 'broker_duplicates'",
		// Per topic with failing unpublished rows (last_error set): how many, and the error
		// written last. At most 100 topics, most failing first.
		topics: "SELECT f.topic, f.n, (SELECT e.last_error FROM " + n.Table + " e" +
			" WHERE CAST(e.topic AS BINARY) = CAST(f.topic AS BINARY) AND e.published_at IS NULL AND e.last_error IS NOT NULL" +
			" ORDER BY e.last_error_at DESC, e.id DESC LIMIT 1)" +
			" FROM (SELECT topic, COUNT(*) AS n FROM " + n.Table + " WHERE published_at IS NULL AND last_error IS NOT NULL" +
			" GROUP BY topic ORDER BY n DESC, topic LIMIT 100) f ORDER BY f.n DESC, f.topic",
		deadList: "SELECT id, original_id, message_id, topic, `key`, type, payload, headers, " + micros("created_at") +
			", attempts, last_error, " + micros("failed_at") + " FROM " + n.Dead + " WHERE id > ? ORDER BY id LIMIT ?",
		deadIDs: "SELECT id FROM " + n.Dead + " WHERE id > ? ORDER BY id LIMIT ?",
	}
}

// idList renders ids as a comma-separated list of integer literals: safe to embed (they are
// numbers), free of the 65,535-placeholder limit, and one round trip without a prepared
// statement.
func idList(ids []int64) string {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(id, 10))
	}
	return b.String()
}

// byID renders ids as a derived table joined first (STRAIGHT_JOIN) to table, aliased t, on
// its primary key, for UPDATE and DELETE: every row is then reached by a unique lookup. The
// plain WHERE id IN (...) is a range scan, and InnoDB locks the row past a range's end even
// under READ COMMITTED, so a claim's DELETE would wait for the claim holding the next id (and
// two claims finishing together could deadlock). The list must not be empty.
func byID(ids []int64, table string) string {
	var b strings.Builder
	b.WriteString("(SELECT ")
	for i, id := range ids {
		if i > 0 {
			b.WriteString(" UNION ALL SELECT ")
		}
		b.WriteString(strconv.FormatInt(id, 10))
		if i == 0 {
			b.WriteString(" AS id")
		}
	}
	b.WriteString(") AS ids STRAIGHT_JOIN ")
	b.WriteString(table)
	b.WriteString(" AS t ON t.id = ids.id")
	return b.String()
}

// deleteByID deletes rows of table by id, chunk by chunk; cond, when not empty, is a further
// condition on t.
func deleteByID(ctx context.Context, tx *sql.Tx, table string, ids []int64, cond string) (int64, error) {
	var n int64
	for start := 0; start < len(ids); start += chunk {
		q := "DELETE t FROM " + byID(ids[start:min(start+chunk, len(ids))], table)
		if cond != "" {
			q += " WHERE " + cond
		}
		res, err := tx.ExecContext(ctx, q)
		if err != nil {
			return n, err
		}
		m, err := res.RowsAffected()
		if err != nil {
			return n, err
		}
		n += m
	}
	return n, nil
}

// placeholders returns n comma-separated question marks.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?,", n-1) + "?"
}

// chunk is how many rows one statement naming rows one by one handles.
const chunk = 1000

// readCommitted is the isolation of every transaction the store runs; see the package
// documentation.
var readCommitted = &sql.TxOptions{Isolation: sql.LevelReadCommitted}

// inTx runs fn in a READ COMMITTED transaction.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, readCommitted)
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
	if len(msgs) == 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("enqueueing: beginning transaction: %w", err)
	}
	if err := s.writer.Enqueue(ctx, tx, msgs...); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("enqueueing: committing: %w", err)
	}
	return nil
}

// Heartbeat implements dialect.Claimer. Its statements run on their own (autocommit): a
// membership is a snapshot, and short statements keep heartbeats of many relays from waiting
// on each other.
func (s *Store) Heartbeat(ctx context.Context, relayID, group string, ttl time.Duration) (dialect.Membership, error) {
	if _, err := s.db.ExecContext(ctx, s.q.heartbeat, relayID, group, group); err != nil {
		return dialect.Membership{}, fmt.Errorf("heartbeat: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, s.q.expire, max(ttl, 0).Microseconds(), relayID); err != nil {
		return dialect.Membership{}, fmt.Errorf("heartbeat: expiring silent relays: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, s.q.members, group)
	if err != nil {
		return dialect.Membership{}, fmt.Errorf("heartbeat: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return dialect.Membership{}, fmt.Errorf("heartbeat: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
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

// DeletePublished implements dialect.Claimer. It reads the expired rows' ids without locks, then
// deletes them by primary key in a READ COMMITTED transaction: a range DELETE could scan (and
// wait for) rows held by open claims, and under REPEATABLE READ would take gap locks that
// stall producers' inserts.
func (s *Store) DeletePublished(ctx context.Context, retention time.Duration, limit int) (int64, error) {
	if limit <= 0 {
		return 0, nil
	}
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		ids, err := queryIDs(ctx, tx, s.q.expired, max(retention, 0).Microseconds(), limit)
		if err != nil || len(ids) == 0 {
			return err
		}
		n, err = deleteByID(ctx, tx, s.names.Table, ids, "t.published_at IS NOT NULL")
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("deleting published rows: %w", err)
	}
	return n, nil
}

// queryIDs runs a query returning one id per row.
func queryIDs(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]int64, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Stats implements dialect.Admin.
func (s *Store) Stats(ctx context.Context) (dialect.Stats, error) {
	var (
		st       dialect.Stats
		oldestUS int64
	)
	err := s.db.QueryRowContext(ctx, s.q.stats).Scan(&st.Pending, &st.Ready, &st.Retrying, &oldestUS, &st.DeadLetters, &st.Relays, &st.BrokerDuplicates)
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
	if limit <= 0 {
		return nil, nil
	}
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
		d.FailedAt = fromMicros(failedUS)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing dead letters: %w", err)
	}
	return out, nil
}

// RetryDeadLetters implements dialect.Admin. The dead letters are locked first (SKIP LOCKED:
// those a concurrent retry or purge holds are theirs), so two retries never copy one back
// twice; the count is what this call moved.
func (s *Store) RetryDeadLetters(ctx context.Context, ids []int64) (int64, error) {
	if ids != nil && len(ids) == 0 {
		return 0, nil
	}
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		q := "SELECT id FROM " + s.names.Dead + " FORCE INDEX (PRIMARY)"
		if ids != nil {
			q += " WHERE id IN (" + idList(ids) + ")"
		}
		locked, err := queryIDs(ctx, tx, q+" ORDER BY id FOR UPDATE SKIP LOCKED")
		if err != nil {
			return err
		}
		// In id order, chunk by chunk, so messages of one key go back in their order.
		for start := 0; start < len(locked); start += chunk {
			list := idList(locked[start:min(start+chunk, len(locked))])
			if _, err := tx.ExecContext(ctx, "INSERT INTO "+s.names.Table+" (message_id, topic, `key`, type, payload, headers, created_at)"+
				" SELECT message_id, topic, `key`, type, payload, headers, created_at FROM "+s.names.Dead+
				" WHERE id IN ("+list+") ORDER BY id"); err != nil {
				return err
			}
			if _, err := deleteByID(ctx, tx, s.names.Dead, locked[start:min(start+chunk, len(locked))], ""); err != nil {
				return err
			}
		}
		n = int64(len(locked))
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("retrying dead letters: %w", err)
	}
	return n, nil
}

// PurgeDeadLetters implements dialect.Admin.
func (s *Store) PurgeDeadLetters(ctx context.Context, ids []int64) (int64, error) {
	if ids != nil && len(ids) == 0 {
		return 0, nil
	}
	if ids == nil {
		res, err := s.db.ExecContext(ctx, "DELETE FROM "+s.names.Dead)
		if err != nil {
			return 0, fmt.Errorf("purging dead letters: %w", err)
		}
		return res.RowsAffected()
	}
	var n int64
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		n, err = deleteByID(ctx, tx, s.names.Dead, ids, "")
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purging dead letters: %w", err)
	}
	return n, nil
}

// maxErrorBytes keeps an error within a TEXT column (65,535 bytes) with room to spare.
const maxErrorBytes = 16000

// storable makes an error text storable in a utf8mb4 TEXT column: valid UTF-8 (strict mode
// refuses anything else, which would fail the whole Finish), cut on a character boundary.
func storable(s string) string { return outbox.StorableText(s, maxErrorBytes) }
