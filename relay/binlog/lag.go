package binlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
)

// ErrNotStreaming is returned by Lag while the source does not read the binary log (before
// its first session, between sessions, or as a standby).
var ErrNotStreaming = errors.New("binlog: the source is not streaming")

// Lag is how far the source's reading is behind the server's binary log.
type Lag struct {
	// Bytes is the binary log from the read position to the server's current position, over
	// the files in between when the server rotated (their sizes, from SHOW BINARY LOGS).
	Bytes int64
	// Seconds is the time since the last transaction event read (its timestamp, whole
	// seconds, as the server wrote it) while the server has events past the read position,
	// but no more than the time since Lag first saw the server ahead (since the last Lag
	// that found the source caught up): after an idle spell, the commit that ends it is
	// not reported as the spell's length behind. 0 when the source has read up to the
	// server's position, and until the session read its first transaction. It compares the
	// server's clock with the relay's.
	Seconds float64
	// Read is the position read up to; Server the server's current one.
	Read, Server Position
}

// readPoint is the position of the last event read, and its timestamp.
type readPoint struct {
	file string
	pos  uint32
	at   time.Time
}

// noteRead records the position and time of an event the reader handled. r.file is already
// the next file after a rotation.
func (s *Source) noteRead(file string, ev *replication.BinlogEvent) {
	h := ev.Header
	pos, timed := h.LogPos, false
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		pos = uint32(e.Position)
	case *replication.XIDEvent, *replication.QueryEvent, *replication.RowsEvent,
		*replication.GTIDEvent, *replication.MariadbGTIDEvent:
		// The events of transactions: the others (format descriptions, GTID lists, the
		// artificial ones starting a stream) carry the file's creation time or none.
		timed = h.Timestamp != 0
	}
	if pos == 0 {
		return
	}
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.lastRead.file, s.lastRead.pos = file, pos
	if timed {
		s.lastRead.at = time.Unix(int64(h.Timestamp), 0)
	}
}

// Lag returns how far the source's reading is behind the server: it reads the server's
// current position (SHOW MASTER STATUS, SHOW BINARY LOG STATUS on MySQL 8.4+, and SHOW
// BINARY LOGS when the server is past the file being read) through Config.DB, so call it at
// an interval, not per event. It returns ErrNotStreaming while no session streams.
func (s *Source) Lag(ctx context.Context) (Lag, error) {
	s.mu.Lock()
	streaming, flavor := s.streaming, s.flavor
	s.mu.Unlock()
	if !streaming {
		return Lag{}, ErrNotStreaming
	}
	s.readMu.Lock()
	rp := s.lastRead
	s.readMu.Unlock()
	if rp.file == "" {
		return Lag{}, ErrNotStreaming
	}
	srv, err := serverPosition(ctx, s.cfg.DB, flavor)
	if err != nil {
		return Lag{}, err
	}
	l := Lag{Read: Position{File: rp.file, Pos: rp.pos}, Server: Position{File: srv.File, Pos: srv.Pos}}
	if srv.File == rp.file {
		l.Bytes = max(int64(srv.Pos)-int64(rp.pos), 0)
	} else if l.Bytes, err = s.bytesAcross(ctx, rp, srv); err != nil {
		return Lag{}, err
	}
	l.Seconds = s.lagSeconds(time.Now(), rp.at, l.Bytes)
	return l, nil
}

// bytesAcross is the binary log from rp to srv in a later file: the rest of rp's file, the
// files in between and srv's file up to its position. A read file the server no longer lists
// (purged) counts from the first file listed.
func (s *Source) bytesAcross(ctx context.Context, rp readPoint, srv Position) (int64, error) {
	rows, err := s.cfg.DB.QueryContext(ctx, `SHOW BINARY LOGS`)
	if err != nil {
		return 0, fmt.Errorf("binlog: listing the binary logs: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return 0, fmt.Errorf("binlog: listing the binary logs: %w", err)
	}
	var total int64
	counting := false
	for rows.Next() {
		var (
			name string
			size int64
		)
		dest := []any{&name, &size}
		for range len(cols) - 2 { // Encrypted (MySQL 8)
			dest = append(dest, new(any))
		}
		if err := rows.Scan(dest...); err != nil {
			return 0, fmt.Errorf("binlog: listing the binary logs: %w", err)
		}
		switch {
		case name == rp.file:
			counting = true
			total += max(size-int64(rp.pos), 0)
		case name == srv.File:
			return total + int64(srv.Pos), nil
		case counting || binlogAfter(name, rp.file):
			counting = true
			total += size
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("binlog: listing the binary logs: %w", err)
	}
	return total + int64(srv.Pos), nil
}

// binlogAfter reports whether the binary log file a comes after b: same base name, higher
// sequence number (the zero-padded extension), or a later name.
func binlogAfter(a, b string) bool {
	if len(a) != len(b) {
		return len(a) > len(b)
	}
	return a > b
}

// lagSeconds is Lag.Seconds at now, read is the last event read's timestamp, bytes the
// binary log past it; it keeps behindSince (when a Lag first saw bytes past the read).
func (s *Source) lagSeconds(now, read time.Time, bytes int64) float64 {
	s.readMu.Lock()
	switch {
	case bytes == 0:
		s.behindSince = time.Time{}
	case s.behindSince.IsZero():
		s.behindSince = now
	}
	since := s.behindSince
	s.readMu.Unlock()
	if bytes == 0 || read.IsZero() {
		return 0
	}
	// The first event not read yet was written after read and before the first Lag that
	// saw it: count from the later of the two.
	return max(now.Sub(latest(read, since)).Seconds(), 0)
}

// latest returns the later of a and b.
func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
