package binlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

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
	s.flavor = srv.flavor
	s.mu.Unlock()
	s.readMu.Lock()
	s.lastRead = readPoint{file: start.File, pos: start.Pos}
	s.readMu.Unlock()
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
		r.s.noteRead(r.file, ev)
	}
}
