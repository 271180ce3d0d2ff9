package binlog

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/outboxgo/outbox/relay/internal/session"
)

// server is what a session learns about the server and the table.
type server struct {
	flavor   string
	database string // the outbox table's database
	serverID uint32 // this source's replica server_id
	lock     string // the GET_LOCK name
	columns  []string
}

// inspect reads the server's settings and checks the tables. Problems retrying cannot fix are
// setup errors.
func (s *Source) inspect(ctx context.Context, conn *sql.Conn) (*server, error) {
	var (
		db                   sql.NullString
		version              string
		own                  uint32
		logBin               int
		format, image        string
		connDB, hasPos, dead int
	)
	err := conn.QueryRowContext(ctx, `SELECT DATABASE(), VERSION(), @@server_id, @@log_bin,
  @@GLOBAL.binlog_format, @@GLOBAL.binlog_row_image`).Scan(&db, &version, &own, &logBin, &format, &image)
	if err != nil {
		return nil, fmt.Errorf("reading server settings: %w", err)
	}
	srv := &server{flavor: flavorOf(version), database: s.table.Schema}
	if srv.database == "" {
		if !db.Valid {
			return nil, setupErrorf("no database selected: name one in the DB's DSN or qualify the table (db.%s)", s.table.Name)
		}
		srv.database = db.String
	}
	switch {
	case logBin != 1:
		return nil, &session.SetupError{Err: ErrBinlogDisabled}
	case !strings.EqualFold(format, "ROW"):
		return nil, setupErrorf("binlog_format is %s: the source reads row events, set binlog_format=ROW", format)
	case !strings.EqualFold(image, "FULL"):
		return nil, setupErrorf("binlog_row_image is %s: set binlog_row_image=FULL", image)
	}
	srv.serverID = s.cfg.ServerID
	if srv.serverID == 0 {
		h := fnv.New32a()
		h.Write([]byte("outbox-binlog\x00" + srv.database + "\x00" + s.table.Name + "\x00" + s.cfg.Name))
		// High ids keep clear of the small ones operators give their servers.
		srv.serverID = h.Sum32() | 1<<31
		if srv.serverID == own {
			srv.serverID ^= 1
		}
	} else if srv.serverID == own {
		return nil, setupErrorf("server_id %d is the server's own: choose another", own)
	}
	srv.lock = lockName(srv.database, s.table.Name, s.cfg.Name)

	if srv.columns, err = s.columns(ctx, conn, srv.database); err != nil {
		return nil, err
	}
	if len(srv.columns) == 0 {
		return nil, setupErrorf("outbox table %s.%s does not exist (run the migrations: outbox migrate up)", srv.database, s.table.Name)
	}
	if miss := newLayout(srv.columns).missing(); miss != "" {
		return nil, setupErrorf("outbox table %s.%s has no column %s", srv.database, s.table.Name, miss)
	}
	err = conn.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(TABLE_NAME = ?), 0), COALESCE(SUM(TABLE_NAME = ?), 0)
FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME IN (?, ?)`,
		s.table.Name+"_binlog", s.table.Name+"_dead", srv.database, s.table.Name+"_binlog", s.table.Name+"_dead").Scan(&connDB, &hasPos, &dead)
	if err != nil {
		return nil, fmt.Errorf("looking up the tables: %w", err)
	}
	if hasPos == 0 || dead == 0 {
		return nil, setupErrorf("tables %s.%s_dead and %s.%s_binlog are needed (run the migrations: outbox migrate up)",
			srv.database, s.table.Name, srv.database, s.table.Name)
	}
	return srv, nil
}

// columns returns the outbox table's column names in order, from information_schema.
func (s *Source) columns(ctx context.Context, q queryer, database string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT COLUMN_NAME FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, database, s.table.Name)
	if err != nil {
		return nil, fmt.Errorf("reading the outbox table's columns: %w", err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, fmt.Errorf("reading the outbox table's columns: %w", err)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading the outbox table's columns: %w", err)
	}
	return cols, nil
}

// lockName is the GET_LOCK name of a source: named locks are server-wide, and at most 64
// characters long.
func lockName(database, table, name string) string {
	h := fnv.New64a()
	h.Write([]byte(database + "." + table + "\x00" + name))
	return "outbox_binlog_" + strconv.FormatUint(h.Sum64(), 16)
}

// lock takes the source's lock on conn without waiting: it reports false when another
// connection holds it.
func lock(ctx context.Context, conn *sql.Conn, name string) (bool, error) {
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, `SELECT GET_LOCK(?, 0)`, name).Scan(&got); err != nil {
		return false, fmt.Errorf("taking lock %s: %w", name, err)
	}
	return got.Valid && got.Int64 == 1, nil
}

// release ends conn's use: it releases the lock (closing the connection when that fails, which
// releases it on the server) and returns the connection to the pool.
func release(conn *sql.Conn, lockName string, broken bool) {
	if lockName != "" && !broken {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := conn.ExecContext(ctx, `DO RELEASE_LOCK(?)`, lockName)
		cancel()
		broken = err != nil
	}
	if broken {
		// Never return a connection to the pool that may still hold the lock.
		_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	_ = conn.Close()
}

// Setup checks the server and the tables and, when the source has no saved position yet,
// saves the server's current position as its starting point. Run does the same at its first
// start; call Setup yourself at deploy time, before producers start writing: messages
// committed before the starting position are not in the source's stream. When another source
// of the same name is running, Setup only checks.
func (s *Source) Setup(ctx context.Context) error {
	conn, err := s.cfg.DB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("binlog: connecting: %w", err)
	}
	srv, err := s.inspect(ctx, conn)
	if err != nil {
		release(conn, "", false)
		return err
	}
	got, err := lock(ctx, conn, srv.lock)
	if err != nil {
		release(conn, "", true)
		return err
	}
	if !got {
		release(conn, "", false)
		_, ok, err := readPosition(ctx, s.cfg.DB, s.table, s.cfg.Name)
		if err == nil && !ok {
			err = errors.New("binlog: another source of this name holds the lock but has saved no position yet")
		}
		return err
	}
	defer release(conn, srv.lock, false)
	if _, ok, err := readPosition(ctx, conn, s.table, s.cfg.Name); err != nil || ok {
		return err
	}
	_, err = s.initPosition(ctx, conn, srv)
	return err
}

// initPosition saves the server's current position as the source's starting point.
func (s *Source) initPosition(ctx context.Context, conn *sql.Conn, srv *server) (Position, error) {
	p, err := serverPosition(ctx, conn, srv.flavor)
	if errors.Is(err, ErrBinlogDisabled) {
		return Position{}, &session.SetupError{Err: err}
	}
	if err != nil {
		return Position{}, err
	}
	if err := savePosition(ctx, conn, s.table, s.cfg.Name, p); err != nil {
		return Position{}, err
	}
	s.logger.Info("no saved position: starting from the server's current position", slog.String("position", p.String()))
	if !s.cfg.KeepAcked {
		var n int64
		if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+s.table.QuotedMySQL()).Scan(&n); err == nil && n > 0 {
			s.logger.Warn("the outbox table already held rows when the source started; they are before its starting position "+
				"and will not be published by this source (publish them with the polling relay, or re-insert them)",
				slog.Int64("rows", n), slog.String("table", s.table.String()))
		}
	}
	return p, nil
}
