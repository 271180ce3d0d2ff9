package wal_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	// Every test drops the slots it creates; a leftover one would pin WAL on the shared server.
	// With -short the tests that need the server are skipped: there is nothing to check.
	if testing.Short() {
		os.Exit(code)
	}
	if left, err := leftoverSlots(); err != nil {
		fmt.Fprintf(os.Stderr, "checking replication slots: %v\n", err)
		code = 1
	} else if len(left) > 0 {
		fmt.Fprintf(os.Stderr, "replication slots left behind: %v\n", left)
		code = 1
	}
	os.Exit(code)
}

func leftoverSlots() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.URL())
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT slot_name::text FROM pg_replication_slots WHERE slot_name LIKE $1`, slotPrefix+"%")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
