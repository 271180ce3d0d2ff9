// Package pgslot drops PostgreSQL replication slots: shared by the WAL source's API, the test
// helpers and the fault-injection checker.
package pgslot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Drop drops the replication slot name, waiting while a relay still reads it; once
// terminateAfter has passed (when positive) it terminates that relay's walsender. It
// returns nil when the slot does not exist, and ctx's error when the slot could not be
// dropped in time. Dropping a slot releases the WAL it holds: messages not yet published are
// lost to the WAL source (in table mode their rows stay in the table).
func Drop(ctx context.Context, pool *pgxpool.Pool, name string, terminateAfter time.Duration) error {
	start := time.Now()
	for {
		var active bool
		var pid *int32
		err := pool.QueryRow(ctx, `SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&active, &pid)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("looking up slot %s: %w", name, err)
		}
		if !active {
			// It may become active between the two statements: then try again.
			if _, err := pool.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, name); err == nil {
				return nil
			}
		} else if terminateAfter > 0 && time.Since(start) > terminateAfter && pid != nil {
			_, _ = pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, *pid)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dropping slot %s: %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
