package chaos

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/relay/binlog"
)

// mariaDB is the MariaDB (or MySQL) server of Config.MySQLDSN, through the mysql dialect. The
// run's tables are in a database of its own, chaos_<id>. The relays log in as a user of their
// own, also chaos_<id>, created for the run with the privileges the source needs: MariaDB has
// no application_name, and the user is how db-terminate finds the relays' sessions.
type mariaDB struct {
	cfg *Config
	log *slog.Logger
	id  string

	db       *sql.DB // the checker's, as Config.MySQLDSN's user
	mcfg     *gomysql.Config
	name     string // the run's database, once created: close drops it
	user     string // the relays' user, once created: close drops it
	host     string // the user's host part: how the server sees this machine
	password string
	tbl      string // name.outbox
	store    *mysql.Store
	writer   *outbox.Writer
	version  string
}

var _ database = (*mariaDB)(nil)

// parseMySQLDSN parses Config.MySQLDSN. The relays reach the server through a TCP fault
// proxy, so the DSN must name a TCP address.
func parseMySQLDSN(dsn string) (*gomysql.Config, error) {
	mc, err := gomysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if mc.Net != "tcp" {
		return nil, fmt.Errorf("network %q: the relays reach the server through a TCP proxy, want tcp(host:port)", mc.Net)
	}
	return mc, nil
}

func (m *mariaDB) setup(ctx context.Context) error {
	if err := checkID(m.id); err != nil {
		return err
	}
	mc, err := parseMySQLDSN(m.cfg.MySQLDSN)
	if err != nil {
		return fmt.Errorf("parsing the MySQL DSN: %w", err)
	}
	mc.ParseTime = true // lookup reads DATETIME columns as time.Time
	m.mcfg = mc
	conn, err := gomysql.NewConnector(mc)
	if err != nil {
		return fmt.Errorf("parsing the MySQL DSN: %w", err)
	}
	m.db = sql.OpenDB(conn)
	m.db.SetMaxOpenConns(m.cfg.Producers + 4)
	m.db.SetMaxIdleConns(m.cfg.Producers + 4)
	if err := m.db.QueryRowContext(ctx, `SELECT VERSION()`).Scan(&m.version); err != nil {
		return fmt.Errorf("connecting to MariaDB at %s (is it running?): %w", mc.Addr, err)
	}

	name := "chaos_" + m.id
	if _, err := m.db.ExecContext(ctx, "CREATE DATABASE "+quoteIdent(name)+" CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		return fmt.Errorf("creating the database: %w", err)
	}
	m.name = name
	m.tbl = name + ".outbox"
	if m.store, err = mysql.New(ctx, mysql.Config{DB: m.db, Table: m.tbl, Logger: m.log}); err != nil {
		return err
	}
	if _, err := m.store.MigrateUp(ctx); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	if m.writer, err = outbox.NewWriter(outbox.WriterConfig{Dialect: outbox.MySQL, Table: m.tbl}); err != nil {
		return err
	}
	if _, err := m.db.ExecContext(ctx, "CREATE TABLE "+m.orders()+` (
		idx BIGINT NOT NULL PRIMARY KEY, message_id CHAR(36) NOT NULL, `+"`key`"+` VARCHAR(64) NOT NULL, seq INT NOT NULL
		) ENGINE=InnoDB`); err != nil {
		return fmt.Errorf("creating the business table: %w", err)
	}
	if err := m.createUser(ctx); err != nil {
		return err
	}
	if m.cfg.Source == SourceBinlog {
		// The relays' source: the same table and (default) name as theirs, as `outbox migrate
		// up --source binlog` would set it up.
		src, err := binlog.New(binlog.Config{DSN: mc.FormatDSN(), DB: m.db, Table: m.tbl, Logger: m.log})
		if err != nil {
			return err
		}
		// What commits before the saved position is not in the relays' stream.
		if err := src.Setup(ctx); err != nil {
			return fmt.Errorf("saving the binlog position: %w", err)
		}
	}
	return nil
}

// createUser creates the relays' user, on the host the server sees this machine as (the
// relays connect through the proxy, from here): with skip_name_resolve an address, else a
// name such as localhost, which an account on '%' would not always match (an anonymous
// ”@'localhost' takes precedence).
func (m *mariaDB) createUser(ctx context.Context) error {
	var host string
	if err := m.db.QueryRowContext(ctx, `SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()`).Scan(&host); err != nil {
		return fmt.Errorf("reading the client host: %w", err)
	}
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i] // host:port
	}
	host = strings.Trim(host, "[]")
	if !validHost(host) {
		host = "%"
	}
	var pw [12]byte
	_, _ = rand.Read(pw[:])
	user, password := "chaos_"+m.id, hex.EncodeToString(pw[:])
	account := quoteString(user) + "@" + quoteString(host)
	if _, err := m.db.ExecContext(ctx, "CREATE USER "+account+" IDENTIFIED BY "+quoteString(password)); err != nil {
		return fmt.Errorf("creating the relays' user: %w", err)
	}
	m.user, m.host, m.password = user, host, password
	grants := []string{"GRANT SELECT, INSERT, UPDATE, DELETE ON " + quoteIdent(m.name) + ".* TO " + account}
	if m.cfg.Source == SourceBinlog {
		// REPLICATION CLIENT is BINLOG MONITOR on MariaDB 10.5+.
		grants = append(grants, "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO "+account)
	}
	for _, g := range grants {
		if _, err := m.db.ExecContext(ctx, g); err != nil {
			return fmt.Errorf("granting the relays' privileges: %w", err)
		}
	}
	return nil
}

// validHost reports whether h can be an account's host part as is: an address or a name.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(".-_:", c)) {
			return false
		}
	}
	return true
}

// quoteIdent quotes a MySQL identifier (the run's own names: checkID vouches for them).
func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// quoteString quotes a MySQL string literal.
func quoteString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

func (m *mariaDB) orders() string { return quoteIdent(m.name) + ".chaos_orders" }

func (m *mariaDB) addr() (string, error) {
	mc, err := parseMySQLDSN(m.cfg.MySQLDSN)
	if err != nil {
		return "", fmt.Errorf("parsing the MySQL DSN: %w", err)
	}
	return mc.Addr, nil
}

func (m *mariaDB) table() string { return m.tbl }

// relayEnv: every relay logs in as the run's user, in the run's database.
func (m *mariaDB) relayEnv(proxyAddr string) (func(i int) []string, error) {
	u := url.URL{Scheme: "mysql", User: url.UserPassword(m.user, m.password), Host: proxyAddr, Path: "/" + m.name}
	env := []string{"OUTBOX_DATABASE_URL=" + u.String()}
	if m.cfg.Source == SourceBinlog {
		env = append(env, "OUTBOX_SOURCE=binlog", "OUTBOX_BINLOG_BATCH_SIZE=500")
	}
	return func(int) []string { return env }, nil
}

// relaysUp: with the binlog source, one relay streams the binary log (the others wait for its
// lock); with the poll source, every relay has registered in the membership table.
func (m *mariaDB) relaysUp(ctx context.Context, n int) (bool, string, error) {
	if m.cfg.Source == SourceBinlog {
		var dumps int
		err := m.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.PROCESSLIST
			WHERE USER = ? AND COMMAND = 'Binlog Dump'`, m.user).Scan(&dumps)
		return err == nil && dumps > 0, fmt.Sprintf("%d binlog dump sessions of user %s", dumps, m.user), err
	}
	st, err := m.store.Stats(ctx)
	return err == nil && st.Relays >= n, fmt.Sprintf("%d of %d relays registered", st.Relays, n), err
}

func (m *mariaDB) begin(ctx context.Context) (producerTx, error) {
	tx, err := m.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &sqlTx{tx: tx, writer: m.writer, orders: m.orders()}, nil
}

// sqlTx is a producer's transaction on MariaDB.
type sqlTx struct {
	tx     *sql.Tx
	writer *outbox.Writer
	orders string
}

func (t *sqlTx) write(ctx context.Context, o orders, msgs []outbox.Message) error {
	if len(o.idx) > 0 {
		args := make([]any, 0, 4*len(o.idx))
		for i := range o.idx {
			args = append(args, o.idx[i], o.ids[i], o.keys[i], o.seqs[i])
		}
		q := "INSERT INTO " + t.orders + " (idx, message_id, `key`, seq) VALUES " +
			strings.Repeat("(?, ?, ?, ?), ", len(o.idx)-1) + "(?, ?, ?, ?)"
		if _, err := t.tx.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("inserting business rows: %w", err)
		}
	}
	return t.writer.Enqueue(ctx, t.tx, msgs...)
}

func (t *sqlTx) commit(context.Context) error { return t.tx.Commit() }

func (t *sqlTx) rollback(context.Context) error {
	if err := t.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return err
	}
	return nil
}

// terminateRelays kills every session of the relays' user: its binlog dump and its lock's
// connection among them.
func (m *mariaDB) terminateRelays(ctx context.Context) (int, error) {
	rows, err := m.db.QueryContext(ctx, `SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?`, m.user)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var ids []uint64
	for rows.Next() {
		var id uint64
		if err := rows.Scan(&id); err != nil {
			return 0, err
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		_, err := m.db.ExecContext(ctx, "KILL CONNECTION "+strconv.FormatUint(id, 10))
		var me *gomysql.MySQLError
		switch {
		case err == nil:
			n++
		case errors.As(err, &me) && me.Number == 1094: // unknown thread id: it ended meanwhile
		default:
			return n, fmt.Errorf("killing session %d: %w", id, err)
		}
	}
	return n, nil
}

func (m *mariaDB) committed(ctx context.Context) ([]int64, error) {
	return queryAll(ctx, m.db, "SELECT idx FROM "+m.orders(), func(rows *sql.Rows) (int64, error) {
		var i int64
		err := rows.Scan(&i)
		return i, err
	})
}

// queryAll runs query and returns every row, read by scan.
func queryAll[T any](ctx context.Context, db *sql.DB, query string, scan func(*sql.Rows) (T, error)) ([]T, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// lookupChunk bounds the ids of one lookup query.
const lookupChunk = 1000

func (m *mariaDB) lookup(ctx context.Context, ids []string) (map[string]LostMessage, error) {
	out := map[string]LostMessage{}
	rows := quoteIdent(m.name) + ".outbox"
	dead := quoteIdent(m.name) + ".outbox_dead"
	for start := 0; start < len(ids); start += lookupChunk {
		chunk := ids[start:min(start+lookupChunk, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		in := "(" + strings.Repeat("?, ", len(chunk)-1) + "?)"
		err := m.scanLost(ctx, out, "outbox", `SELECT message_id, id, attempts, COALESCE(last_error, ''), available_at FROM `+rows+` WHERE message_id IN `+in, args)
		if err == nil {
			err = m.scanLost(ctx, out, "dead_letters", `SELECT message_id, original_id, attempts, last_error, failed_at FROM `+dead+` WHERE message_id IN `+in, args)
		}
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// scanLost runs query and reads its rows into out, as where (see collectLost).
func (m *mariaDB) scanLost(ctx context.Context, out map[string]LostMessage, where, query string, args []any) error {
	rows, err := m.db.QueryContext(ctx, query, args...) //nolint:rowserrcheck // collectLost returns rows.Err
	if err != nil {
		return err
	}
	defer rows.Close()
	return collectLost(rows, where, out)
}

func (m *mariaDB) stats(ctx context.Context) (dialect.Stats, error) { return m.store.Stats(ctx) }

func (m *mariaDB) notes(relayIDs string) []string {
	source := "poll source, no commit notifications on MariaDB: each worker polls every 50ms; " + relayIDs
	if m.cfg.Source == SourceBinlog {
		source = fmt.Sprintf("binlog source %s (position saved before the load): one relay streams the binary log, holding its GET_LOCK, the others wait as hot standbys", m.tbl)
	}
	return []string{
		fmt.Sprintf("database: MariaDB %s (mysql dialect), database %s; the relays log in as '%s'@'%s'; db-terminate = KILL CONNECTION of that user's sessions", m.version, m.name, m.user, m.host),
		"source: " + source,
	}
}

func (m *mariaDB) close(keep bool) []string {
	if m.db == nil {
		return nil
	}
	defer m.db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var notes []string
	if m.user != "" {
		// Always: an account left behind is a login. Its sessions first: DROP USER leaves
		// them running, and their locks would hold up the DROP DATABASE.
		if _, err := m.terminateRelays(ctx); err != nil {
			m.log.Warn("ending the relays' sessions", slog.Any("error", err))
		}
		account := quoteString(m.user) + "@" + quoteString(m.host)
		if _, err := m.db.ExecContext(ctx, "DROP USER IF EXISTS "+account); err != nil {
			m.log.Warn("dropping the relays' user", slog.String("user", m.user), slog.Any("error", err))
			notes = append(notes, fmt.Sprintf("user %s could not be dropped: %v; drop it: DROP USER %s", account, err, account))
		}
	}
	switch {
	case m.name == "":
	case keep:
		notes = append(notes, "database kept for inspection: "+m.name+" (DROP DATABASE "+m.name+" when done)")
	default:
		if _, err := m.db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(m.name)); err != nil {
			m.log.Warn("dropping the database", slog.String("database", m.name), slog.Any("error", err))
		}
	}
	return notes
}

// hostileClasses are MariaDB's hostile rows: message ids that are not UUIDs or not in their
// canonical form, values that get past strict mode or the headers check in a session that
// turns them off (SET STATEMENT), attempts out of range, headers the sinks refuse, and
// headers with non-string values. {t} stands for the outbox table; the placeholders are
// message_id, key, payload and headers.
func (m *mariaDB) hostileClasses() []hostileClass {
	insert := func(prefix, col, val string) string {
		return prefix + "INSERT INTO {t} (message_id, topic, `key`, payload, headers" + col + ") VALUES (?, '" + outboxTopic + "', ?, ?, ?" + val + ")"
	}
	plain := insert("", "", "")
	cs := []hostileClass{
		{name: "message-id-not-uuid", fate: FateDead, reason: "message_id", textID: "not-a-uuid-", insert: plain},
		// Two spellings of one id meet in the unique index (the dialect stores message_id
		// canonically): the row must not get in, to be published as a second message.
		{name: "message-id-upper-case", fate: FateRefused, reason: "Duplicate entry", upperID: true, insert: plain},
		{name: "attempts-negative", fate: FateDead, reason: "attempts", insert: insert("", ", attempts", ", -1")},
		{name: "attempts-max", fate: FateDead, reason: "attempts", insert: insert("", ", attempts", ", 2147483647")},
		{name: "created-at-zero", fate: FateDead, reason: "created_at",
			insert: insert("SET STATEMENT sql_mode = '' FOR ", ", created_at", ", '0000-00-00 00:00:00'")},
		{name: "headers-array", fate: FateDead, reason: "headers", headers: "[1, 2]",
			insert: insert("SET STATEMENT check_constraint_checks = 0 FOR ", "", "")},
		{name: "headers-string", fate: FateDead, reason: "headers", headers: `"text"`,
			insert: insert("SET STATEMENT check_constraint_checks = 0 FOR ", "", "")},
		nonStringHeaders(plain),
	}
	return append(cs, headerClasses(plain)...)
}

func (m *mariaDB) insertHostile(ctx context.Context, c *hostileClass, id, key string, payload []byte) error {
	insert := strings.ReplaceAll(c.insert, "{t}", m.tbl)
	args := []any{id, key, payload, cmpOr(c.headers, "{}")}
	if !c.upperID {
		_, err := m.db.ExecContext(ctx, insert, args...)
		return err
	}
	// The other spelling meets the original in the unique index only while the original's
	// row is in the table: lock it for the INSERT, or skip when the relays already removed
	// it (a later row with the id of a published message is a duplicate, which is the
	// broker's to drop).
	tx, err := m.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var seq int64
	err = tx.QueryRowContext(ctx, "SELECT id FROM "+m.tbl+" WHERE message_id = ? FOR UPDATE", strings.ToLower(id)).Scan(&seq)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return errNoOriginal
	case lockConflict(err):
		return fmt.Errorf("%w: %w", errNoOriginal, err)
	case err != nil:
		return err
	}
	if _, err := tx.ExecContext(ctx, insert, args...); err != nil {
		if lockConflict(err) { // rolled back: the unique index was never consulted
			return fmt.Errorf("%w: %w", errNoOriginal, err)
		}
		return err
	}
	return tx.Commit()
}

// lockConflict reports a deadlock (1213) or lock wait timeout (1205): the transaction was
// rolled back, whatever it was about.
func lockConflict(err error) bool {
	var me *gomysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

func (m *mariaDB) deadLetters(ctx context.Context) ([]deadLetter, error) {
	return queryAll(ctx, m.db, "SELECT message_id, payload, last_error, attempts FROM "+quoteIdent(m.name)+".outbox_dead",
		func(rows *sql.Rows) (deadLetter, error) {
			var d deadLetter
			err := rows.Scan(&d.messageID, &d.payload, &d.reason, &d.attempts)
			return d, err
		})
}

func (m *mariaDB) consumerTables() (string, string, string) {
	return m.name + ".inbox", quoteIdent(m.name) + ".chaos_effects", quoteIdent(m.name) + ".chaos_counters"
}

func (m *mariaDB) setupConsumers(ctx context.Context) (*inbox.Inbox, error) {
	table, effects, counters := m.consumerTables()
	in, err := inbox.New(ctx, inbox.Config{Dialect: outbox.MySQL, DB: m.db, Table: table, Consumer: inboxConsumer, Logger: m.log})
	if err != nil {
		return nil, err
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		return nil, fmt.Errorf("migrating the inbox: %w", err)
	}
	// No unique constraint on the effects: a message applied twice must show.
	for _, q := range []string{
		"CREATE TABLE " + effects + " (message_id VARCHAR(255) NOT NULL, `key` VARCHAR(255) NOT NULL, seq INT NOT NULL, " +
			"apply BIGINT NOT NULL, process INT NOT NULL, applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
		"CREATE TABLE " + counters + " (`key` VARCHAR(255) NOT NULL PRIMARY KEY, n BIGINT NOT NULL) ENGINE=InnoDB",
	} {
		if _, err := m.db.ExecContext(ctx, q); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// consumerDB: the consumers log in as the relays' user, so that db-terminate ends their
// sessions too.
func (m *mariaDB) consumerDB(proxyAddr string) (func(i int) (string, string), error) {
	mc := gomysql.NewConfig()
	mc.User, mc.Passwd, mc.Net, mc.Addr, mc.DBName = m.user, m.password, "tcp", proxyAddr, m.name
	dsn := mc.FormatDSN()
	return func(int) (string, string) { return string(outbox.MySQL), dsn }, nil
}

func (m *mariaDB) effects(ctx context.Context) ([]effectRow, error) {
	_, effects, _ := m.consumerTables()
	return queryAll(ctx, m.db, "SELECT message_id, `key`, seq, apply, process FROM "+effects, func(rows *sql.Rows) (effectRow, error) {
		var e effectRow
		err := rows.Scan(&e.messageID, &e.key, &e.seq, &e.apply, &e.process)
		return e, err
	})
}
