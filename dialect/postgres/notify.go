package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox/dialect"
)

// notifyChannel is the channel the insert trigger (migration 002) notifies.
const notifyChannel = "outbox_insert"

var _ dialect.Notifier = (*Store)(nil)

// Listen implements dialect.Notifier: it LISTENs on a dedicated connection and calls wake
// whenever a transaction that inserted into this store's table commits. A lost connection is
// re-established (with wake called once after, for what was missed meanwhile). It returns
// when ctx ends.
func (s *Store) Listen(ctx context.Context, wake func()) error {
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, wake, func() { delay = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return nil
		}
		s.logger.Warn("outbox notification listener lost; polling covers the gap while it reconnects",
			slog.Any("error", err), slog.Duration("retry_in", delay))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, 5*time.Second)
	}
	return nil
}

func (s *Store) listenOnce(ctx context.Context, wake func(), connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connecting: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	want := s.table.String()
	if s.table.Schema == "" {
		var schema string
		if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			return fmt.Errorf("resolving schema: %w", err)
		}
		want = schema + "." + s.table.Name
	}
	if _, err := conn.Exec(ctx, `LISTEN `+notifyChannel); err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	connected()
	wake() // anything committed while no one was listening
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if n.Payload == want {
			wake()
		}
	}
}
