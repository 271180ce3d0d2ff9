package wal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay/internal/session"
)

// setupErrorf reports a configuration problem found on the server (wrong slot plugin, missing
// table...): retrying cannot fix it, so Run returns it.
func setupErrorf(format string, args ...any) error {
	return session.SetupErrorf("wal: "+format, args...)
}

// ErrWALLevel is wrapped by the error Setup and Run return when the server's wal_level is not
// logical: logical decoding is impossible until the server is reconfigured and restarted, so
// Run does not retry.
var ErrWALLevel = errors.New("wal_level is not logical")

// checkWALLevel returns an ErrWALLevel setup error unless level is logical.
func checkWALLevel(level string) error {
	if level == "logical" {
		return nil
	}
	return setupErrorf("%w (it is %q): set wal_level = logical in postgresql.conf and restart the server", ErrWALLevel, level)
}

// errSlotBusy: another relay streams from the slot (this one is a standby).
var errSlotBusy = errors.New("replication slot is active for another connection")

var errCrashed = errors.New("wal: source crashed (test hook)")

// Run streams from the replication slot until ctx ends, reconnecting after failures and
// waiting while another relay holds the slot. When ctx ends it lets the batches in flight
// finish (within ShutdownTimeout), confirms what they completed, and disconnects. It returns
// nil then, or an error for a configuration problem that retrying cannot fix.
func (s *Source) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("wal: Run is already running")
	}
	defer s.running.Store(false)
	// The acker outlives ctx for the final drain.
	defer s.q.StartAcker(ctx, s.apply)()
	var wg sync.WaitGroup
	mctx, stopMaintain := context.WithCancel(ctx)
	defer func() {
		stopMaintain()
		wg.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.maintain(mctx)
	}()

	standby := false
	return session.Loop{
		Session:    s.session,
		Interval:   s.cfg.ReconnectInterval,
		Crashed:    s.crashed,
		ErrCrashed: errCrashed,
		Failed: func(err error) {
			s.mu.Lock()
			s.q.Reset()
			s.mu.Unlock()
			if errors.Is(err, errSlotBusy) {
				if !standby {
					s.logger.Info("replication slot in use by another relay; standing by", slog.Any("error", err))
				}
				standby = true
			} else {
				standby = false
				s.logger.Warn("replication stream failed; reconnecting", slog.Any("error", err),
					slog.Duration("retry_in", s.cfg.ReconnectInterval))
			}
		},
	}.Run(ctx)
}

// Setup creates the publication and the replication slot when they are missing, and checks
// them (and the tables) when they exist. Run calls it on every connect; call it yourself
// before producers start writing, at deploy time: messages committed before the slot exists
// are not in its stream.
func (s *Source) Setup(ctx context.Context) error {
	conn, err := pgconn.ConnectConfig(ctx, s.conn)
	if err != nil {
		return fmt.Errorf("wal: connecting for replication: %w", err)
	}
	defer closeConn(conn)
	_, err = s.setup(ctx, conn)
	return err
}

func closeConn(conn *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// tableName is the outbox table as the server names it.
type tableName struct{ namespace, name string }

// setup checks the database, the tables, the publication and the slot, creating the last two
// when missing. It returns the outbox table's resolved name (table mode).
func (s *Source) setup(ctx context.Context, conn *pgconn.PgConn) (tableName, error) {
	var tn tableName
	var level string
	if err := s.cfg.Pool.QueryRow(ctx, `SHOW wal_level`).Scan(&level); err != nil {
		return tn, fmt.Errorf("reading wal_level: %w", err)
	}
	if err := checkWALLevel(level); err != nil {
		return tn, err
	}
	ident, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		return tn, fmt.Errorf("identifying system: %w", err)
	}
	var db string
	if err := s.cfg.Pool.QueryRow(ctx, `SELECT current_database()`).Scan(&db); err != nil {
		return tn, fmt.Errorf("querying database name: %w", err)
	}
	if ident.DBName != db {
		return tn, setupErrorf("conn_string reaches database %q but pool reaches %q", ident.DBName, db)
	}
	var deadOK bool
	err = s.cfg.Pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, s.table.Derived("_dead").Quoted()).Scan(&deadOK)
	if err != nil {
		return tn, fmt.Errorf("looking up the dead-letter table: %w", err)
	}
	if !deadOK {
		return tn, setupErrorf("dead-letter table %s does not exist (run the migrations: outbox migrate up)", s.table.Derived("_dead"))
	}
	if s.cfg.Mode == ModeTable {
		err := s.cfg.Pool.QueryRow(ctx, `SELECT n.nspname, c.relname FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)`, s.table.Quoted()).Scan(&tn.namespace, &tn.name)
		if errors.Is(err, pgx.ErrNoRows) {
			return tn, setupErrorf("outbox table %s does not exist (run the migrations: outbox migrate up)", s.table)
		}
		if err != nil {
			return tn, fmt.Errorf("looking up the outbox table: %w", err)
		}
	}
	created, err := s.ensurePublication(ctx, tn)
	if err != nil {
		return tn, err
	}
	if err := s.ensureSlot(ctx, conn, db); err != nil {
		if created {
			// Leave nothing behind: a publication without its slot is half a setup.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, derr := s.cfg.Pool.Exec(dctx, `DROP PUBLICATION IF EXISTS "`+s.cfg.Publication+`"`); derr != nil {
				return tn, errors.Join(err, fmt.Errorf("dropping publication %s created for the slot: %w", s.cfg.Publication, derr))
			}
			s.logger.Info("dropped the publication created for the slot that could not be set up", slog.String("publication", s.cfg.Publication))
		}
		return tn, err
	}
	return tn, nil
}

// ensurePublication creates the publication when it is missing (created reports that) and
// checks it otherwise.
func (s *Source) ensurePublication(ctx context.Context, tn tableName) (created bool, err error) {
	pub := s.cfg.Publication
	for range 2 {
		var insert bool
		err := s.cfg.Pool.QueryRow(ctx, `SELECT pubinsert FROM pg_publication WHERE pubname = $1`, pub).Scan(&insert)
		if errors.Is(err, pgx.ErrNoRows) {
			q := `CREATE PUBLICATION "` + pub + `"`
			if s.cfg.Mode == ModeTable {
				q += ` FOR TABLE ` + s.table.Quoted() + ` WITH (publish = 'insert')`
			}
			_, err := s.cfg.Pool.Exec(ctx, q)
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "42710" {
				continue // created concurrently by another relay: check it
			}
			if err != nil {
				return false, fmt.Errorf("creating publication %s: %w", pub, err)
			}
			s.logger.Info("created publication", slog.String("publication", pub))
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("looking up publication %s: %w", pub, err)
		}
		if s.cfg.Mode != ModeTable {
			return false, nil
		}
		if !insert {
			return false, setupErrorf("publication %s does not publish inserts", pub)
		}
		var listed bool
		err = s.cfg.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication_tables
WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)`, pub, tn.namespace, tn.name).Scan(&listed)
		if err != nil {
			return false, fmt.Errorf("checking publication %s: %w", pub, err)
		}
		if !listed {
			return false, setupErrorf("publication %s exists but does not publish table %s.%s", pub, tn.namespace, tn.name)
		}
		return false, nil
	}
	return false, fmt.Errorf("creating publication %s: created and dropped concurrently", pub)
}

func (s *Source) ensureSlot(ctx context.Context, conn *pgconn.PgConn, db string) error {
	slot := s.cfg.SlotName
	var (
		plugin, kind *string
		slotDB       *string
	)
	err := s.cfg.Pool.QueryRow(ctx, `SELECT plugin::text, slot_type, database::text FROM pg_replication_slots WHERE slot_name = $1`,
		slot).Scan(&plugin, &kind, &slotDB)
	if err == nil {
		switch {
		case kind == nil || *kind != "logical":
			return setupErrorf("replication slot %s is not a logical slot", slot)
		case plugin == nil || *plugin != "pgoutput":
			return setupErrorf("replication slot %s uses plugin %v, not pgoutput", slot, deref(plugin))
		case slotDB == nil || *slotDB != db:
			return setupErrorf("replication slot %s belongs to database %q, not %q", slot, deref(slotDB), db)
		}
		return nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("looking up replication slot %s: %w", slot, err)
	}
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Mode: pglogrepl.LogicalReplication, SnapshotAction: "NOEXPORT_SNAPSHOT",
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42710" {
		return nil // created concurrently by another relay
	}
	if err != nil {
		return fmt.Errorf("creating replication slot %s: %w", slot, err)
	}
	s.logger.Info("created replication slot", slog.String("consistent_point", res.ConsistentPoint))
	if s.cfg.Mode == ModeTable && !s.cfg.KeepAcked {
		var n int64
		if err := s.cfg.Pool.QueryRow(ctx, `SELECT count(*) FROM `+s.table.Quoted()).Scan(&n); err == nil && n > 0 {
			s.logger.Warn("the outbox table already held rows when the slot was created; they are not in the WAL stream "+
				"and will not be published by this source (publish them with the polling relay, or re-insert them)",
				slog.Int64("rows", n), slog.String("table", s.table.String()))
		}
	}
	return nil
}

func deref(p *string) string {
	if p == nil {
		return "<null>"
	}
	return *p
}

// session connects, sets up, and streams until ctx ends (then drains and confirms) or the
// connection fails.
func (s *Source) session(ctx context.Context) error {
	conn, err := pgconn.ConnectConfig(ctx, s.conn)
	if err != nil {
		return fmt.Errorf("connecting for replication: %w", err)
	}
	defer closeConn(conn)
	tn, err := s.setup(ctx, conn)
	if err != nil {
		return err
	}
	args := []string{
		"proto_version '1'",
		"publication_names '" + s.cfg.Publication + "'",
		"messages 'true'",
	}
	err = pglogrepl.StartReplication(ctx, conn, s.cfg.SlotName, 0, pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication, PluginArgs: args,
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "55006" { // object_in_use
			return fmt.Errorf("%w: %s", errSlotBusy, pgErr.Message)
		}
		return fmt.Errorf("starting replication: %w", err)
	}
	// Read the position once the slot is ours: a relay that held it before may have moved it
	// until then, and a status update must never report less than the slot already has.
	var confirmed *string
	err = s.cfg.Pool.QueryRow(ctx, `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`,
		s.cfg.SlotName).Scan(&confirmed)
	if err != nil {
		return fmt.Errorf("reading the slot's position: %w", err)
	}
	s.mu.Lock()
	s.q.Reset()
	if confirmed != nil {
		if lsn, err := pglogrepl.ParseLSN(*confirmed); err == nil {
			s.confirmed = max(s.confirmed, lsn)
		}
	}
	start := s.confirmed
	s.streaming = true
	s.mu.Unlock()
	s.stream.Store(conn)
	defer func() {
		s.stream.Store(nil)
		s.mu.Lock()
		s.streaming = false
		s.mu.Unlock()
	}()
	s.logger.Info("streaming from replication slot", slog.String("from_lsn", start.String()), slog.String("mode", string(s.cfg.Mode)))
	r := &reader{s: s, table: tn, relations: map[uint32]*relation{}, types: pgtype.NewMap()}
	err = s.loop(ctx, conn, r)
	if err != nil {
		s.mu.Lock()
		s.reconnects++
		s.mu.Unlock()
	}
	return err
}

// loop reads the replication stream. It sends a status update every StatusInterval and when
// the server asks, and stops reading (but keeps sending updates) while too much is pending.
func (s *Source) loop(ctx context.Context, conn *pgconn.PgConn, r *reader) error {
	netConn := conn.Conn()
	// Reads use the connection's deadline (no per-message context): cancelling ctx expires
	// it so a blocked read returns.
	stop := context.AfterFunc(ctx, func() { _ = netConn.SetReadDeadline(time.Now()) })
	defer stop()
	nextStatus := time.Now()
	for {
		select {
		case <-s.crashed:
			return errCrashed
		default:
		}
		if ctx.Err() != nil {
			return s.shutdown(conn)
		}
		now := time.Now()
		if !now.Before(nextStatus) {
			if err := s.sendStatus(conn); err != nil {
				return err
			}
			nextStatus = now.Add(s.cfg.StatusInterval)
		}
		s.mu.Lock()
		over := s.q.Overloaded()
		s.mu.Unlock()
		if over {
			t := time.NewTimer(time.Until(nextStatus))
			select {
			case <-ctx.Done():
			case <-s.crashed:
			case <-s.q.Progress():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		if err := netConn.SetReadDeadline(nextStatus); err != nil {
			return fmt.Errorf("setting read deadline: %w", err)
		}
		if ctx.Err() != nil {
			continue // cancelled before the deadline was set: the AfterFunc's expiry was overwritten
		}
		msg, err := conn.ReceiveMessage(context.Background())
		if err != nil {
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receiving: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				continue
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parsing keepalive: %w", err)
				}
				s.mu.Lock()
				// Everything before the server's sent position has been streamed to us.
				s.mark(pkm.ServerWALEnd)
				s.mu.Unlock()
				if pkm.ReplyRequested {
					nextStatus = time.Time{}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("parsing XLogData: %w", err)
				}
				if err := r.handle(xld.WALData); err != nil {
					return err
				}
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyDone:
			return errors.New("the server ended the replication stream")
		}
	}
}

// sendStatus confirms the highest position whose messages are all done. When nothing is
// pending it asks the server to reply, so an idle slot learns (and confirms, next time) the
// server's position and never pins WAL.
func (s *Source) sendStatus(conn *pgconn.PgConn) error {
	s.mu.Lock()
	lsn, idle := s.confirmable()
	s.mu.Unlock()
	netConn := conn.Conn()
	_ = netConn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = netConn.SetWriteDeadline(time.Time{}) }()
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: lsn,
		ReplyRequested:   idle,
	})
	if err != nil {
		return fmt.Errorf("sending standby status: %w", err)
	}
	return nil
}

// shutdown waits (up to ShutdownTimeout) for batches in flight and their database writes,
// sending status updates meanwhile, then confirms what finished.
func (s *Source) shutdown(conn *pgconn.PgConn) error {
	send := func() error { return s.sendStatus(conn) }
	if err := s.q.Drain(s.crashed, errCrashed, s.cfg.ShutdownTimeout, s.cfg.StatusInterval, send); err != nil {
		return err
	}
	return send()
}

// maintain writes heartbeats and watches the retained WAL until ctx ends.
func (s *Source) maintain(ctx context.Context) {
	var hb, lag <-chan time.Time
	if s.cfg.HeartbeatInterval > 0 {
		t := time.NewTicker(s.cfg.HeartbeatInterval)
		defer t.Stop()
		hb = t.C
	}
	if s.cfg.MaxRetainedBytes > 0 && s.cfg.LagCheckInterval > 0 {
		t := time.NewTicker(s.cfg.LagCheckInterval)
		defer t.Stop()
		lag = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hb:
			s.mu.Lock()
			streaming := s.streaming
			s.mu.Unlock()
			if !streaming {
				continue // a standby leaves the heartbeats to the relay holding the slot
			}
			if _, err := s.cfg.Pool.Exec(ctx, `SELECT pg_logical_emit_message(false, $1::text, ''::bytea)`, s.hbPrefix); err != nil && ctx.Err() == nil {
				s.logger.Warn("writing WAL heartbeat failed", slog.Any("error", err))
			}
		case <-lag:
			s.checkLag(ctx)
		}
	}
}

func (s *Source) checkLag(ctx context.Context) {
	retained, err := s.Lag(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("checking replication lag failed", slog.Any("error", err))
		}
		return
	}
	if retained > s.cfg.MaxRetainedBytes {
		s.logger.Warn("replication slot retains more WAL than max_retained_bytes: fix the sink (or whatever stops "+
			"messages from being acknowledged), or drop the slot (SELECT pg_drop_replication_slot('"+s.cfg.SlotName+
			"')), losing the messages not yet published, before the WAL fills the disk",
			slog.Int64("retained_bytes", retained), slog.Int64("max_retained_bytes", s.cfg.MaxRetainedBytes))
	}
}

// Lag returns how many bytes of WAL the slot holds back: the distance from the server's
// current WAL position to the slot's confirmed position. It returns ErrSlotNotFound when the
// slot does not exist.
func (s *Source) Lag(ctx context.Context) (retainedBytes int64, err error) {
	var lag *int64
	err = s.cfg.Pool.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint
FROM pg_replication_slots WHERE slot_name = $1`, s.cfg.SlotName).Scan(&lag)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ErrSlotNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("wal: reading slot lag: %w", err)
	}
	if lag == nil {
		return 0, nil
	}
	return *lag, nil
}

// reader decodes one session's stream. Only the stream loop uses it.
type reader struct {
	s          *Source
	table      tableName
	relations  map[uint32]*relation
	types      *pgtype.Map
	commitTime time.Time
}

// handle decodes one pgoutput message.
func (r *reader) handle(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	s := r.s
	switch pglogrepl.MessageType(data[0]) {
	case pglogrepl.MessageTypeBegin:
		var m pglogrepl.BeginMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decoding Begin: %w", err)
		}
		r.commitTime = m.CommitTime
		s.mu.Lock()
		s.q.Begin(txnInfo{xid: m.Xid})
		s.mu.Unlock()
	case pglogrepl.MessageTypeCommit:
		var m pglogrepl.CommitMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decoding Commit: %w", err)
		}
		s.mu.Lock()
		if t := s.q.End(); t != nil {
			t.Info.end = m.TransactionEndLSN
		}
		s.mu.Unlock()
		s.q.Nudge()
	case pglogrepl.MessageTypeRelation:
		var m pglogrepl.RelationMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decoding Relation: %w", err)
		}
		r.relations[m.RelationID] = newRelation(&m, r.table.namespace, r.table.name)
	case pglogrepl.MessageTypeInsert:
		if s.cfg.Mode != ModeTable {
			return nil
		}
		var m pglogrepl.InsertMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decoding Insert: %w", err)
		}
		rel := r.relations[m.RelationID]
		if rel == nil {
			return fmt.Errorf("insert into relation %d before its Relation message", m.RelationID)
		}
		if !rel.outbox || m.Tuple == nil {
			return nil
		}
		rec, err := rel.decodeRow(m.Tuple.Columns, r.types)
		r.add(rec, err, false, 0)
	case pglogrepl.MessageTypeMessage:
		var m pglogrepl.LogicalDecodingMessage
		if err := m.Decode(data[1:]); err != nil {
			return fmt.Errorf("decoding logical message: %w", err)
		}
		switch {
		case m.Prefix == s.cfg.MessagePrefix && s.cfg.Mode == ModeLogical:
			rec, err := outbox.ParseLogical(m.Content)
			rec.Seq = int64(m.LSN)
			if err != nil {
				rec.Payload = append([]byte(nil), m.Content...)
			}
			r.add(rec, err, !m.Transactional, m.LSN)
		case m.Prefix == s.hbPrefix && !m.Transactional:
			s.mu.Lock()
			s.mark(m.LSN)
			s.mu.Unlock()
		}
	}
	return nil
}

// add queues a decoded message, or sends an undecodable one to the dead letters. A
// non-transactional message (written outside any transaction) is its own unit, confirmed at its
// own position.
func (r *reader) add(rec outbox.Record, decodeErr error, standalone bool, lsn pglogrepl.LSN) {
	s := r.s
	if rec.CreatedAt.IsZero() {
		if standalone || r.commitTime.IsZero() {
			rec.CreatedAt = time.Now()
		} else {
			rec.CreatedAt = r.commitTime
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.q.Open()
	if standalone || t == nil {
		t = s.q.Append(txnInfo{end: lsn})
	}
	if decodeErr != nil {
		s.logger.Warn("undecodable message; moved to dead letters", slog.Int64("seq", rec.Seq), slog.Any("error", decodeErr))
		s.q.Reject(t, rec, "undecodable message: "+decodeErr.Error())
		return
	}
	s.q.Add(t, rec)
}
