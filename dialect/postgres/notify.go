package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox/dialect"
)

// notifyChannel is the channel the insert trigger (migration 002) notifies.
const notifyChannel = "outbox_insert"

var _ dialect.Notifier = (*Store)(nil)

// Listen implements dialect.Notifier: it LISTENs on a dedicated connection and calls wake
// whenever a transaction that inserted into this store's table commits, with the partition
// hashes of the inserted keys the notification lists (migration 004; nil when it lists none).
// A lost connection is re-established (with wake(nil) called once after, for what was missed
// meanwhile). It returns when ctx ends.
func (s *Store) Listen(ctx context.Context, wake func(keyHashes []uint64)) error {
	return dialect.Reconnect(ctx, s.logger, "outbox notification listener lost; polling covers the gap while it reconnects",
		func(ctx context.Context, connected func()) error { return s.listenOnce(ctx, wake, connected) })
}

func (s *Store) listenOnce(ctx context.Context, wake func([]uint64), connected func()) error {
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
	wake(nil) // anything committed while no one was listening
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		if table, hashes, ok := parsePayload(n.Payload); ok && table == want {
			wake(hashes)
		}
	}
}

// parsePayload splits a notification of the insert trigger: "schema.table", or (migration
// 004) "schema.table h1,h2,..." with the partition hashes of the inserted keys. Table names
// have no spaces (sqlident). A list that does not parse wakes every worker (nil hashes).
func parsePayload(p string) (table string, hashes []uint64, ok bool) {
	table, list, found := strings.Cut(p, " ")
	if !found || list == "" {
		return table, nil, true
	}
	hashes = make([]uint64, 0, strings.Count(list, ",")+1)
	for f := range strings.SplitSeq(list, ",") {
		h, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return table, nil, true
		}
		hashes = append(hashes, h)
	}
	return table, hashes, true
}
