package wal

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox/internal/pgslot"
)

// SlotStatus is what the server reports about a replication slot (pg_replication_slots).
type SlotStatus struct {
	Name string
	// Active reports whether a relay is reading the slot now; ActivePID is its server
	// process (0 when inactive).
	Active    bool
	ActivePID int
	// ConfirmedLSN is the position the relay confirmed: everything before it was published.
	ConfirmedLSN string
	// CurrentLSN is the server's current WAL position.
	CurrentLSN string
	// RetainedBytes is the WAL the slot holds back: CurrentLSN − ConfirmedLSN.
	RetainedBytes int64
	// WALStatus is the server's verdict on the retained WAL: reserved, extended, unreserved
	// or lost (past max_slot_wal_keep_size: the slot is invalid and must be recreated).
	WALStatus string
}

// Slot returns the status of the replication slot name, or ErrSlotNotFound. It needs no
// replication connection: `outbox status` uses it.
func Slot(ctx context.Context, pool *pgxpool.Pool, name string) (SlotStatus, error) {
	st := SlotStatus{Name: name}
	var (
		pid       *int32
		confirmed *string
		retained  *int64
		walStatus *string
	)
	err := pool.QueryRow(ctx, `SELECT active, active_pid, confirmed_flush_lsn::text, pg_current_wal_lsn()::text,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, wal_status
FROM pg_replication_slots WHERE slot_name = $1`, name).
		Scan(&st.Active, &pid, &confirmed, &st.CurrentLSN, &retained, &walStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, ErrSlotNotFound
	}
	if err != nil {
		return st, fmt.Errorf("wal: reading slot %s: %w", name, err)
	}
	if pid != nil {
		st.ActivePID = int(*pid)
	}
	if confirmed != nil {
		st.ConfirmedLSN = *confirmed
	}
	if retained != nil {
		st.RetainedBytes = *retained
	}
	if walStatus != nil {
		st.WALStatus = *walStatus
	}
	return st, nil
}

// DropSlot drops the replication slot name, waiting while a relay still reads it; once
// terminateAfter has passed (when positive) it terminates that relay's walsender. It
// returns nil when the slot does not exist, and ctx's error when the slot could not be
// dropped in time. Dropping a slot releases the WAL it holds: messages not yet published are
// lost to the WAL source (in table mode their rows stay in the table).
func DropSlot(ctx context.Context, pool *pgxpool.Pool, name string, terminateAfter time.Duration) error {
	if err := pgslot.Drop(ctx, pool, name, terminateAfter); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	return nil
}
