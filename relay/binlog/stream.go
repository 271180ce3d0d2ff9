package binlog

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"

	"github.com/outboxgo/outbox/relay/internal/session"
)

// setupErrorf reports a configuration problem found on the server (binary log off, missing
// tables...): retrying cannot fix it, so Run returns it.
func setupErrorf(format string, args ...any) error {
	return session.SetupErrorf("binlog: "+format, args...)
}

var (
	// errStandby: another source of the same name holds the lock (this one is a standby).
	errStandby  = errors.New("another source of this name holds the lock")
	errCrashed  = errors.New("binlog: source crashed (test hook)")
	errSilent   = errors.New("the server sent nothing, not even a heartbeat")
	errLockLost = errors.New("the lock's connection failed")
)

const (
	// serverHeartbeat is the heartbeat period asked of the server: it sends a heartbeat event
	// when it has had nothing to send for that long.
	serverHeartbeat = time.Second
	// silenceLimit ends a session whose server sent nothing for that long while the source was
	// waiting: the connection is dead (a network partition closes nothing).
	silenceLimit = 10 * serverHeartbeat
	// eventBuffer bounds the events go-mysql decodes ahead of the source.
	eventBuffer = 128
	// queryTimeout bounds the source's own queries on the lock's connection.
	queryTimeout = 10 * time.Second
)

// Run streams the binary log until ctx ends, reconnecting after failures and standing by while
// another source of the same name holds the lock. When ctx ends it lets the batches in flight
// finish (within ShutdownTimeout), saves the position they completed, and disconnects. It
// returns nil then, or an error for a configuration problem that retrying cannot fix.
func (s *Source) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("binlog: Run is already running")
	}
	defer s.running.Store(false)
	// The acker outlives ctx for the final drain.
	defer s.q.StartAcker(ctx, s.apply)()

	standby := false
	err := session.Loop{
		Session:    s.session,
		Interval:   s.cfg.ReconnectInterval,
		Crashed:    s.crashed,
		ErrCrashed: errCrashed,
		Failed: func(err error) {
			s.mu.Lock()
			s.reset()
			isStandby := errors.Is(err, errStandby)
			s.standby = isStandby
			if !isStandby {
				s.reconnects++
			}
			s.mu.Unlock()
			if isStandby {
				if !standby {
					s.logger.Info("another source of this name is running; standing by")
				}
			} else if isUnreadable(err) {
				// Retried (the cause may be a server switched over, or being restored), but
				// loudly: this needs an operator.
				s.logger.Error("the server cannot stream the binary log from the saved position: its binary logs were "+
					"purged, or the position belongs to another server; see the package documentation (resetting the position)",
					slog.Any("error", err), slog.String("position", s.Stats().Saved.String()))
			} else {
				s.logger.Warn("binlog stream failed; reconnecting", slog.Any("error", err),
					slog.Duration("retry_in", s.cfg.ReconnectInterval))
			}
			standby = isStandby
		},
	}.Run(ctx)
	if session.IsSetup(err) {
		s.logger.Error("binlog source cannot start", slog.Any("error", err))
	}
	return err
}

func (s *Source) isCrashed() bool {
	select {
	case <-s.crashed:
		return true
	default:
		return false
	}
}

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

// session takes the lock, reads the position and streams until ctx ends (then drains and
// saves) or something fails.
func (s *Source) session(ctx context.Context) (err error) {
	conn, err := s.cfg.DB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	var (
		lockName string
		broken   bool
	)
	defer func() { release(conn, lockName, broken || s.isCrashed()) }()
	srv, err := s.inspect(ctx, conn)
	if err != nil {
		broken = true
		return err
	}
	got, err := lock(ctx, conn, srv.lock)
	if err != nil {
		broken = true
		return err
	}
	if !got {
		return errStandby
	}
	lockName = srv.lock
	start, ok, err := readPosition(ctx, conn, s.table, s.cfg.Name)
	if err == nil && !ok {
		start, err = s.initPosition(ctx, conn, srv)
	}
	if err != nil {
		broken = true
		return err
	}
	tracker, err := newTracker(srv.flavor, start.GTID)
	if err != nil {
		return setupErrorf("saved position of %q: %w", s.cfg.Name, err)
	}

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	syncer := replication.NewBinlogSyncer(s.syncerConfig(srv))
	var closeOnce sync.Once
	closeSyncer := func() { closeOnce.Do(syncer.Close) }
	defer closeSyncer()
	kill := func() {
		cancel(errCrashed)
		closeSyncer()
	}
	s.kill.Store(&kill)
	defer s.kill.Store(nil)

	var streamer *replication.BinlogStreamer
	if set := tracker.startSet(); set != nil {
		streamer, err = syncer.StartSyncGTID(set)
	} else {
		streamer, err = syncer.StartSync(mysql.Position{Name: start.File, Pos: start.Pos})
	}
	if err != nil {
		return s.classify(fmt.Errorf("starting the binlog stream: %w", err))
	}

	s.mu.Lock()
	s.reset()
	s.gtids = tracker
	s.confFile, s.confPos = start.File, start.Pos
	s.saved = start
	s.streaming, s.standby = true, false
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.streaming = false
		s.mu.Unlock()
	}()
	s.logger.Info("streaming the binary log", slog.String("from", start.String()), slog.Uint64("server_id", uint64(srv.serverID)))

	r := &reader{s: s, srv: srv, file: start.File, kinds: map[uint64]tableKind{}, layouts: map[uint64]*layout{}}
	var (
		wg      sync.WaitGroup
		waiting atomic.Int64 // when the reader started waiting for an event (unix ns), 0 when not waiting
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.saveLoop(sctx, cancel, conn, &waiting)
	}()
	err = s.read(sctx, streamer, r, &waiting)
	cancel(err)
	wg.Wait()
	if s.isCrashed() {
		return errCrashed
	}
	if ctx.Err() != nil {
		closeSyncer() // stop reading; finish what was read
		if err := s.shutdown(conn); err != nil {
			broken = true
			s.logger.Warn("saving the final position failed", slog.Any("error", err))
		}
		return nil
	}
	if cause := context.Cause(sctx); errors.Is(cause, errLockLost) {
		broken = true
		err = cause
	}
	return s.classify(err)
}

// classify turns errors retrying cannot fix into setup errors.
func (s *Source) classify(err error) error {
	var me *mysql.MyError
	if errors.As(err, &me) {
		switch me.Code {
		case mysql.ER_ACCESS_DENIED_ERROR, mysql.ER_SPECIFIC_ACCESS_DENIED_ERROR, mysql.ER_DBACCESS_DENIED_ERROR:
			return &session.SetupError{Err: fmt.Errorf("binlog: the replication user lacks a privilege (REPLICATION SLAVE, REPLICATION CLIENT): %w", err)}
		}
	}
	return err
}

// isUnreadable reports the server's refusal to stream from a position (error 1236: binary
// log purged, GTID position not in the server's binary logs).
func isUnreadable(err error) bool {
	var me *mysql.MyError
	return errors.As(err, &me) && me.Code == mysql.ER_MASTER_FATAL_ERROR_READING_BINLOG
}

func (s *Source) syncerConfig(srv *server) replication.BinlogSyncerConfig {
	return replication.BinlogSyncerConfig{
		ServerID:         srv.serverID,
		Flavor:           srv.flavor,
		Host:             s.repl.Addr, // host:port, or a socket path (with Port 0)
		User:             s.repl.User,
		Password:         s.repl.Passwd,
		TLSConfig:        s.repl.TLS,
		ParseTime:        true,
		HeartbeatPeriod:  serverHeartbeat,
		DisableRetrySync: true, // the source reconnects itself, from its saved position
		EventCacheCount:  eventBuffer,
		Logger:           slog.New(&quietHandler{h: s.logger.With(slog.String("component", "go-mysql")).Handler()}),
		// The stream carries every table's changes: decode the rows of inserts into the outbox
		// table only. Other rows events keep their header (table, type) and no rows.
		RowsEventDecodeFunc: func(e *replication.RowsEvent, data []byte) error {
			pos, err := e.DecodeHeader(data)
			if err != nil {
				return err
			}
			if e.Type() != replication.EnumRowsEventTypeInsert || e.Table == nil ||
				string(e.Table.Table) != s.table.Name || string(e.Table.Schema) != srv.database {
				return nil
			}
			return e.DecodeData(pos, data)
		},
	}
}

// read handles events until ctx ends or the stream fails.
func (s *Source) read(ctx context.Context, streamer *replication.BinlogStreamer, r *reader, waiting *atomic.Int64) error {
	for {
		waiting.Store(time.Now().UnixNano())
		ev, err := streamer.GetEvent(ctx)
		waiting.Store(0)
		if err != nil {
			if c := context.Cause(ctx); c != nil {
				return c
			}
			return fmt.Errorf("reading the binlog stream: %w", err)
		}
		if err := r.handle(ctx, ev); err != nil {
			if c := context.Cause(ctx); c != nil {
				return c
			}
			return err
		}
	}
}

// saveLoop saves the position every PositionInterval when it is due, checks the lock's
// connection otherwise, and ends the session when the server has gone silent.
func (s *Source) saveLoop(ctx context.Context, cancel context.CancelCauseFunc, conn *sql.Conn, waiting *atomic.Int64) {
	t := time.NewTicker(s.cfg.PositionInterval)
	defer t.Stop()
	lastSave := time.Now()
	var (
		failures int       // consecutive failed saves on a live connection
		retryAt  time.Time // no save before then (the connection is still checked)
	)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var err error
		if time.Now().Before(retryAt) {
			err = s.ping(ctx, conn)
		} else if err = s.save(ctx, conn, &lastSave, false); err != nil && ctx.Err() == nil && s.ping(ctx, conn) == nil {
			// The server refused the write but the connection (and the lock) is fine: keep
			// streaming and back off, instead of restarting the session, which would
			// publish again everything since the saved position.
			failures++
			d := min(30*time.Second, 100*time.Millisecond<<min(failures-1, 20))
			d = d/2 + rand.N(d/2+1)
			retryAt = time.Now().Add(d)
			s.cfg.Logger.Warn("saving the binlog position failed; streaming goes on, retrying",
				slog.Any("error", err), slog.Int("failures", failures), slog.Duration("retry_in", d))
			continue
		} else if err == nil && failures > 0 {
			s.cfg.Logger.Info("saving the binlog position works again", slog.Int("failures", failures))
			failures, retryAt = 0, time.Time{}
		}
		if err != nil {
			if ctx.Err() == nil {
				cancel(fmt.Errorf("%w: %w", errLockLost, err))
			}
			return
		}
		if since := waiting.Load(); since != 0 && time.Since(time.Unix(0, since)) > silenceLimit {
			cancel(fmt.Errorf("%w for %v", errSilent, silenceLimit))
			return
		}
	}
}

// save writes the confirmed position when it is due: messages were done since the last save,
// or (every HeartbeatInterval, or when final) other traffic moved it. Otherwise it checks that
// the lock's connection is alive: a source whose lock may be gone must stop.
func (s *Source) save(ctx context.Context, conn *sql.Conn, lastSave *time.Time, final bool) error {
	s.mu.Lock()
	s.confirm()
	p := s.confirmed()
	due := s.urgent || (s.moved && (final || s.cfg.HeartbeatInterval > 0 && time.Since(*lastSave) >= s.cfg.HeartbeatInterval))
	if p.GTID == s.saved.GTID && p.File == s.saved.File && p.Pos == s.saved.Pos {
		due = false
	}
	if due {
		s.urgent, s.moved = false, false
	}
	s.mu.Unlock()
	// Not cancelled with ctx: a query cancelled midway closes its connection, and with it the
	// lock and the final save after a graceful stop. The timeout bounds a dead connection.
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), queryTimeout)
	defer cancel()
	if !due {
		_, err := conn.ExecContext(qctx, `DO 0`)
		return err
	}
	if err := savePosition(qctx, conn, s.table, s.cfg.Name, p); err != nil {
		s.mu.Lock()
		s.urgent = true // still to save
		s.mu.Unlock()
		return err
	}
	*lastSave = time.Now()
	p.UpdatedAt = lastSave.UTC()
	s.mu.Lock()
	s.saved = p
	s.mu.Unlock()
	return nil
}

// ping checks that the lock's connection is alive.
func (s *Source) ping(ctx context.Context, conn *sql.Conn) error {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), queryTimeout)
	defer cancel()
	_, err := conn.ExecContext(qctx, `DO 0`)
	return err
}

// shutdown waits (up to ShutdownTimeout) for batches in flight and their database writes,
// saving the position meanwhile, then saves the final position.
func (s *Source) shutdown(conn *sql.Conn) error {
	ctx := context.Background()
	lastSave := time.Now()
	save := func() error { return s.save(ctx, conn, &lastSave, false) }
	if err := s.q.Drain(s.crashed, errCrashed, s.cfg.ShutdownTimeout, s.cfg.PositionInterval, save); err != nil {
		return err
	}
	return s.save(ctx, conn, &lastSave, true)
}

// admit waits while the source holds as much as it may. Called by the stream loop before it
// takes on another transaction or message.
func (s *Source) admit(ctx context.Context) error {
	for {
		s.mu.Lock()
		over := s.overloaded()
		if over {
			s.confirm() // done transactions no longer count
			over = s.overloaded()
		}
		s.mu.Unlock()
		if !over {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-s.q.Progress():
		}
	}
}

// tableKind classifies a table id of the stream.
type tableKind uint8

const (
	otherTable tableKind = iota
	outboxTable
	selfTable
)

// reader decodes one session's stream. Only the stream loop uses it.
type reader struct {
	s       *Source
	srv     *server
	file    string // the binary log file being read
	kinds   map[uint64]tableKind
	layouts map[uint64]*layout // of the outbox table, by table id
}

// handle applies one event.
func (r *reader) handle(ctx context.Context, ev *replication.BinlogEvent) error {
	s := r.s
	h := ev.Header
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		r.file = string(e.NextLogName)
		// The server starts every stream with an artificial rotation (timestamp 0) naming the
		// file: only a real one moves the position (to the start of the next file).
		if h.Timestamp != 0 {
			s.mark(r.file, uint32(e.Position))
		}
	case *replication.MariadbGTIDEvent:
		t, err := r.begin(ctx, h)
		if err != nil {
			return err
		}
		// MariaDB's GTID event starts the transaction (there is no BEGIN); a standalone one
		// (DDL, a statement on its own) ends with its single statement.
		t.Info.gtid.maria = e.GTID
		t.Info.begun = !e.IsStandalone()
	case *replication.GTIDEvent:
		t, err := r.begin(ctx, h)
		if err != nil {
			return err
		}
		if sid, err := uuid.FromBytes(e.SID); err == nil && sid != uuid.Nil && e.GNO > 0 {
			t.Info.gtid.sid, t.Info.gtid.gno = sid, e.GNO
		}
	case *replication.QueryEvent:
		return r.query(ctx, h, e)
	case *replication.XIDEvent:
		r.commit(h)
	case *replication.TableMapEvent:
		return r.tableMap(ctx, e)
	case *replication.RowsEvent:
		return r.rows(ctx, h, e)
	case *replication.TransactionPayloadEvent:
		// Its inserts would go unseen: refuse rather than miss messages.
		return setupErrorf("the binary log holds compressed transactions (MySQL binlog_transaction_compression): not supported, turn it off")
	case *replication.GenericEvent:
		if h.EventType >= mariadbCompressedRowsV2 && h.EventType <= mariadbCompressedRowsV2+2 {
			return setupErrorf("the binary log holds MariaDB compressed row events of version 2 (%d): not supported, turn log_bin_compress off", h.EventType)
		}
	}
	return nil
}

// mariadbCompressedRowsV2 is MariaDB's WRITE_ROWS_COMPRESSED_EVENT (then UPDATE, DELETE), which
// go-mysql does not decode (it decodes the _V1 ones, MariaDB's default).
const mariadbCompressedRowsV2 replication.EventType = 169

// begin opens a transaction, closing one left open (not expected) where this one starts.
func (r *reader) begin(ctx context.Context, h *replication.EventHeader) (*txn, error) {
	s := r.s
	if err := s.admit(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.q.End(); t != nil {
		t.Info.file, t.Info.pos = r.file, h.LogPos-min(h.LogPos, h.EventSize)
	}
	return s.q.Begin(txnInfo{}), nil
}

// current returns the open transaction, or begins one at h (then fresh is true).
func (r *reader) current(ctx context.Context, h *replication.EventHeader) (t *txn, fresh bool, err error) {
	r.s.mu.Lock()
	t = r.s.q.Open()
	r.s.mu.Unlock()
	if t != nil {
		return t, false, nil
	}
	t, err = r.begin(ctx, h)
	return t, err == nil, err
}

// commit ends the open transaction at the end of the event.
func (r *reader) commit(h *replication.EventHeader) {
	s := r.s
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.q.End()
	if t == nil {
		t = s.q.Append(txnInfo{})
	}
	t.Info.file, t.Info.pos = r.file, h.LogPos
	s.confirm()
}

// mark records a position the stream has passed with nothing in between: once every
// transaction read before it is done, it may be confirmed.
func (s *Source) mark(file string, pos uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.q.Open() != nil {
		return
	}
	s.q.Append(txnInfo{file: file, pos: pos})
	s.confirm()
}

func (r *reader) query(ctx context.Context, h *replication.EventHeader, e *replication.QueryEvent) error {
	s := r.s
	q := strings.TrimSpace(string(e.Query))
	switch {
	case strings.EqualFold(q, "BEGIN") || hasPrefixFold(q, "XA START"):
		t, _, err := r.current(ctx, h)
		if err != nil {
			return err
		}
		t.Info.begun = true
	case strings.EqualFold(q, "COMMIT") || strings.EqualFold(q, "ROLLBACK") || hasPrefixFold(q, "XA END"):
		r.commit(h)
	default:
		// A statement: DDL, or one inside a transaction (SAVEPOINT). DDL that may concern the
		// outbox table (ALTER TABLE) may change its layout: read that again.
		if strings.Contains(strings.ToLower(q), strings.ToLower(s.table.Name)) {
			r.srv.columns = nil
		}
		s.mu.Lock()
		t := s.q.Open()
		if t != nil {
			t.Info.foreign = true
		}
		s.mu.Unlock()
		if t == nil || !t.Info.begun {
			r.commit(h) // a statement on its own: its end is a position
		}
	}
	return nil
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// tableMap classifies a table id and, for the outbox table, maps its columns: by the names the
// server sends (binlog_row_metadata=FULL), else by information_schema.
func (r *reader) tableMap(ctx context.Context, e *replication.TableMapEvent) error {
	if string(e.Schema) != r.srv.database {
		r.kinds[e.TableID] = otherTable
		return nil
	}
	switch string(e.Table) {
	case r.s.table.Name:
		r.kinds[e.TableID] = outboxTable
	case r.s.table.Name + "_binlog":
		r.kinds[e.TableID] = selfTable
		return nil
	default:
		r.kinds[e.TableID] = otherTable
		return nil
	}
	names := e.ColumnNameString()
	if len(names) != int(e.ColumnCount) {
		if len(r.srv.columns) != int(e.ColumnCount) {
			cols, err := r.s.columns(ctx, r.s.cfg.DB, r.srv.database)
			if err != nil {
				return err
			}
			r.srv.columns = cols
		}
		if len(r.srv.columns) != int(e.ColumnCount) {
			return fmt.Errorf("binlog: the outbox table's row events have %d columns, the table %d "+
				"(was it altered? set binlog_row_metadata=FULL so that events carry their column names)",
				e.ColumnCount, len(r.srv.columns))
		}
		names = r.srv.columns
	}
	l := newLayout(names)
	if miss := l.missing(); miss != "" {
		return fmt.Errorf("binlog: the outbox table's row events have no column %s", miss)
	}
	r.layouts[e.TableID] = l
	return nil
}

// rows handles a rows event: inserts into the outbox table become messages; any other change
// only classifies the transaction.
func (r *reader) rows(ctx context.Context, h *replication.EventHeader, e *replication.RowsEvent) error {
	s := r.s
	t, fresh, err := r.current(ctx, h)
	if err != nil {
		return err
	}
	if fresh {
		t.Info.begun = true
	}
	kind := r.kinds[e.TableID]
	insert := isInsert(h.EventType)
	switch {
	case kind == selfTable:
		s.mu.Lock()
		t.Info.self = true
		s.mu.Unlock()
		return nil
	case kind != outboxTable || !insert:
		s.mu.Lock()
		t.Info.foreign = true
		s.mu.Unlock()
		return nil
	}
	l := r.layouts[e.TableID]
	if l == nil {
		return fmt.Errorf("binlog: rows of table id %d before its table map", e.TableID)
	}
	commit := time.Unix(int64(h.Timestamp), 0).UTC()
	for _, row := range e.Rows {
		if err := s.admit(ctx); err != nil {
			return err
		}
		rec, err := l.decodeRow(row, commit)
		s.mu.Lock()
		t.Info.outbox = true
		if err != nil {
			s.logger.Warn("undecodable outbox row; moved to dead letters", slog.Int64("seq", rec.Seq), slog.Any("error", err))
			s.q.Reject(t, rec, "undecodable row: "+err.Error())
		} else {
			s.q.Add(t, rec)
		}
		s.mu.Unlock()
	}
	return nil
}

func isInsert(t replication.EventType) bool {
	switch t {
	case replication.WRITE_ROWS_EVENTv0, replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2,
		replication.MARIADB_WRITE_ROWS_COMPRESSED_EVENT_V1:
		return true
	}
	return false
}

// quietHandler passes go-mysql's logs on lower: its errors and warnings are info (the source
// reports, at its own level, the failures it handles), its info is debug.
type quietHandler struct{ h slog.Handler }

func (q *quietHandler) lower(l slog.Level) slog.Level {
	if l >= slog.LevelWarn {
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

func (q *quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return q.h.Enabled(ctx, q.lower(l))
}

func (q *quietHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = q.lower(r.Level)
	return q.h.Handle(ctx, r)
}

func (q *quietHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &quietHandler{h: q.h.WithAttrs(as)}
}
func (q *quietHandler) WithGroup(n string) slog.Handler { return &quietHandler{h: q.h.WithGroup(n)} }
