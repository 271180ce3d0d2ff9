package binlog

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

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
