package wal_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay/wal"
)

// TestOutcomeWriteFails: the dead-letter table refuses inserts; the acknowledged messages are
// not published again while the acker backs off, and everything is recorded once it accepts.
func TestOutcomeWriteFails(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e := setup(t, mode)
			schema := e.table[:len(e.table)-len(".outbox")]
			logs := &logtest.Recorder{}
			env := sourcetest.Env[*wal.Source]{Commit: e.commit, NewSource: func() *wal.Source {
				cfg := e.config(t)
				cfg.Logger = slog.New(logs)
				src := e.source(t, cfg)
				if err := src.Setup(context.Background()); err != nil {
					t.Fatal(err)
				}
				return src
			}}
			var src *wal.Source
			newSource := env.NewSource
			env.NewSource = func() *wal.Source { src = newSource(); return src }
			exec := func(tb testing.TB, sql string) {
				if _, err := e.pool.Exec(context.Background(), sql); err != nil {
					tb.Fatal(err)
				}
			}
			sourcetest.OutcomeWriteFails(t, env, logs,
				func() int { return src.Stats().Pending },
				func() int {
					var n int
					if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+e.table+`_dead`).Scan(&n); err != nil {
						t.Fatal(err)
					}
					return n
				},
				func(tb testing.TB) {
					exec(tb, `CREATE FUNCTION `+schema+`.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'dead letters refused (test)'; END $$;
CREATE TRIGGER refuse BEFORE INSERT ON `+e.table+`_dead FOR EACH ROW EXECUTE FUNCTION `+schema+`.refuse()`)
				},
				func(tb testing.TB) { exec(tb, `DROP TRIGGER refuse ON `+e.table+`_dead`) })
		})
	}
}
