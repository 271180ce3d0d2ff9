package binlog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"
)

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
