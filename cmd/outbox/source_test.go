package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/outboxgo/outbox/internal/testutil/mysqltest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

// TestSourceSetupAndStatus: migrate up prepares each log source (the WAL slot, the binlog
// starting position) and status reports it, in text and JSON.
func TestSourceSetupAndStatus(t *testing.T) {
	t.Parallel()
	t.Run("wal", func(t *testing.T) {
		t.Parallel()
		pool, schema := pgtest.Schema(t)
		slot := "outbox_status_" + schema[2:]
		if len(slot) > 63 {
			slot = slot[:63]
		}
		t.Cleanup(func() { pgtest.DropSlot(t, pool, slot) })
		in := invocation{env: map[string]string{
			"OUTBOX_DATABASE_URL": pgtest.URL(),
			"OUTBOX_TABLE":        schema + ".outbox",
			"OUTBOX_SOURCE":       "wal",
			"OUTBOX_WAL_SLOT":     slot,
		}}
		in.run(t, "status").want(t, 1).contains(t, "outbox migrate up")
		in.run(t, "migrate", "up").want(t, 0).contains(t, "applied migration 1", "replication slot "+slot+" and its publication are ready")
		in.run(t, "migrate", "up").want(t, 0).contains(t, "up to date", "replication slot "+slot)
		r := in.run(t, "status").want(t, 0)
		r.matches(t, `(?m)^source\s+wal$`, `(?m)^slot\s+`+slot+`, inactive`, `(?m)^  retained wal\s+\d`)
		var s statusJSON
		r = in.run(t, "status", "--json").want(t, 0)
		if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
			t.Fatal(err)
		}
		if s.Source != "wal" || s.Slot == nil || !s.Slot.Exists || s.Slot.Active || s.Slot.ConfirmedLSN == "" || s.Slot.RetainedBytes < 0 {
			t.Fatalf("status --json: %s", r.stdout)
		}
		// The slot of another name does not exist: status says so instead of failing.
		in.run(t, "status", "--wal-slot", "outbox_no_such_slot").want(t, 0).contains(t, "outbox_no_such_slot: does not exist")
		// wal needs PostgreSQL; binlog needs MariaDB.
		in.run(t, "status", "--source", "binlog").want(t, 2).contains(t, "source: binlog reads the MariaDB/MySQL binary log")
	})
	t.Run("binlog", func(t *testing.T) {
		t.Parallel()
		_, dsn, _ := mysqltest.Database(t)
		in := invocation{env: map[string]string{
			"OUTBOX_DATABASE_URL": mysqlURL(t, dsn),
			"OUTBOX_SOURCE":       "binlog",
		}}
		in.run(t, "migrate", "up").want(t, 0).contains(t, "applied migration 1", "binlog source outbox starts at ")
		r := in.run(t, "status").want(t, 0).contains(t, "(mysql)")
		r.matches(t, `(?m)^source\s+binlog$`, `(?m)^binlog\s+outbox$`, `(?m)^  saved position\s+\S+.*\(saved `, `(?m)^  server position\s+\S`)
		var s statusJSON
		r = in.run(t, "status", "--json").want(t, 0)
		if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
			t.Fatal(err)
		}
		if s.Binlog == nil || !s.Binlog.Saved || (s.Binlog.Position.GTID == "" && s.Binlog.Position.File == "") ||
			(s.Binlog.Server.GTID == "" && s.Binlog.Server.File == "") {
			t.Fatalf("status --json: %s", r.stdout)
		}
		in.run(t, "status", "--source", "wal").want(t, 2).contains(t, "source: wal reads PostgreSQL's write-ahead log")
	})
}

func (r result) matches(t *testing.T, patterns ...string) result {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(r.stdout) {
			t.Fatalf("output does not match %s\nstdout:\n%s\nstderr:\n%s", p, r.stdout, r.stderr)
		}
	}
	return r
}

// TestRelayBinlogLagMetrics: a binlog relay's admin server exports the lag gauges, 0 once it
// has published everything.
func TestRelayBinlogLagMetrics(t *testing.T) {
	t.Parallel()
	_, dsn, _ := mysqltest.Database(t)
	in := invocation{env: map[string]string{
		"OUTBOX_DATABASE_URL": mysqlURL(t, dsn),
		"OUTBOX_SOURCE":       "binlog",
	}}
	in.run(t, "migrate", "up").want(t, 0)
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		done <- in.runCtx(t, ctx, "relay", "--sink-type", "stdout", "--admin-addr", addr, "--admin-stats-interval", "100ms")
	}()
	for i := range 3 {
		in.run(t, "enqueue", "--topic", "orders.created", "--key", "o-"+strconv.Itoa(i), "--data", `{}`).want(t, 0)
	}
	waitFor(t, func() bool {
		code, body := get(t, "http://"+addr+"/metrics", "")
		return code == 200 && strings.Contains(body, `outbox_relay_published_total{sink="stdout"} 3`) &&
			strings.Contains(body, `outbox_binlog_lag_bytes{source="binlog"} 0`) &&
			strings.Contains(body, `outbox_binlog_lag_seconds{source="binlog"} 0`)
	})
	cancel()
	(<-done).want(t, 0)
}
