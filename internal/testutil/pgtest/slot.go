package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox/internal/pgslot"
)

// DropSlot waits for the replication slot to be released by its walsender (terminating it
// after 15 s), drops it and the publication of the same name, and checks the slot is gone.
// Tests that run a WAL source call it in a cleanup: a slot left behind pins WAL on the
// shared server.
func DropSlot(tb testing.TB, pool *pgxpool.Pool, slot string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := pgslot.Drop(ctx, pool, slot, 15*time.Second); err != nil {
		tb.Errorf("%v", err)
		return
	}
	if _, err := pool.Exec(ctx, `DROP PUBLICATION IF EXISTS "`+slot+`"`); err != nil {
		tb.Errorf("dropping publication %s: %v", slot, err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&n); err != nil || n != 0 {
		tb.Errorf("slot %s still exists after the test (%d, %v)", slot, n, err)
	}
}
