package pgtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DropSlot waits for the replication slot to be released by its walsender (terminating it
// after 15 s), drops it and the publication of the same name, and checks the slot is gone.
// Tests that run a WAL source call it in a cleanup: a slot left behind pins WAL on the
// shared server.
func DropSlot(tb testing.TB, pool *pgxpool.Pool, slot string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var active bool
		var pid *int32
		err := pool.QueryRow(ctx, `SELECT active, active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&active, &pid)
		if errors.Is(err, pgx.ErrNoRows) {
			break
		}
		if err != nil {
			tb.Errorf("looking up slot %s: %v", slot, err)
			return
		}
		if !active {
			if _, err := pool.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, slot); err == nil {
				break
			}
		} else if time.Now().After(deadline) && pid != nil {
			tb.Logf("slot %s still active for pid %d; terminating it", slot, *pid)
			_, _ = pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, *pid)
		}
		if ctx.Err() != nil {
			tb.Errorf("slot %s: could not drop it: %v", slot, ctx.Err())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := pool.Exec(ctx, `DROP PUBLICATION IF EXISTS "`+slot+`"`); err != nil {
		tb.Errorf("dropping publication %s: %v", slot, err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&n); err != nil || n != 0 {
		tb.Errorf("slot %s still exists after the test (%d, %v)", slot, n, err)
	}
}
