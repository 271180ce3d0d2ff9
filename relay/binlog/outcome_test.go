package binlog_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/binlog"
)

// TestOutcomeWriteFails: the dead-letter table refuses inserts; the acknowledged messages are
// not published again while the acker backs off, and everything is recorded once it accepts.
func TestOutcomeWriteFails(t *testing.T) {
	t.Parallel()
	e := setup(t)
	logs := &logtest.Recorder{}
	var src *binlog.Source
	env := sourcetest.Env[*binlog.Source]{Commit: e.commit, NewSource: func() *binlog.Source {
		cfg := e.config(t)
		cfg.Logger = slog.New(logs)
		src = e.source(t, cfg)
		if err := src.Setup(context.Background()); err != nil {
			t.Fatal(err)
		}
		return src
	}}
	exec := func(tb testing.TB, sql string) {
		if _, err := e.db.Exec(sql); err != nil {
			tb.Fatal(err)
		}
	}
	sourcetest.OutcomeWriteFails(t, env, logs,
		func() int { return src.Stats().Pending },
		func() int { return e.count(t, e.table+"_dead") },
		func(tb testing.TB) {
			exec(tb, "CREATE TRIGGER refuse BEFORE INSERT ON `"+e.table+"_dead` FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'dead letters refused (test)'")
		},
		func(tb testing.TB) { exec(tb, "DROP TRIGGER refuse") })
}

// TestPositionSaveFails: the position table refuses writes. The source keeps streaming (it
// does not restart its session, which would publish everything since the saved position
// again), backs off from the failing save, and saves once the table accepts writes again.
func TestPositionSaveFails(t *testing.T) {
	t.Parallel()
	e := setup(t)
	logs := &logtest.Recorder{}
	cfg := e.config(t)
	cfg.Logger = slog.New(logs)
	src := e.source(t, cfg)
	if err := src.Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := e.saved(t, cfg.Name)
	for _, ev := range []string{"INSERT", "UPDATE"} {
		if _, err := e.db.Exec("CREATE TRIGGER refuse_" + ev + " BEFORE " + ev + " ON `" + e.table + "_binlog` FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'position refused (test)'"); err != nil {
			t.Fatal(err)
		}
	}
	sk := sourcetest.NewSink()
	sourcetest.StartRelay(t, src, sk, relay.Config{})
	n := len(e.produce(t, 10, 0, 5, 10))
	sourcetest.WaitFor(t, 30*time.Second, "the deliveries", func() bool { return sk.Unique() == n })
	time.Sleep(3 * time.Second)
	_, count := sk.Snapshot()
	for id, c := range count {
		if c > 1 {
			t.Errorf("message %s published %d times while the position could not be saved", id, c)
		}
	}
	failures := 0
	for _, m := range logs.Msgs() {
		if strings.HasPrefix(m, "WARN saving the binlog position failed") {
			failures++
		}
	}
	if failures < 2 || failures > 25 {
		t.Errorf("%d logged save failures in 3s, want a few (backing off); logs: %q", failures, logs.Msgs())
	}
	for _, ev := range []string{"INSERT", "UPDATE"} {
		if _, err := e.db.Exec("DROP TRIGGER refuse_" + ev); err != nil {
			t.Fatal(err)
		}
	}
	// The save lands before its recovery is logged: wait for both.
	sourcetest.WaitFor(t, 60*time.Second, "the position saved and the recovery logged", func() bool {
		return e.saved(t, cfg.Name) != before && logs.Has("INFO saving the binlog position works again")
	})
}
