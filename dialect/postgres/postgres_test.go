package postgres_test

import (
	"context"
	"strings"
	"testing"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/dialecttest"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/internal/testutil/service"
)

func newStore(t *testing.T) *postgres.Store {
	t.Helper()
	pool, schema := pgtest.Schema(t)
	s, err := postgres.New(context.Background(), postgres.Config{Pool: pool, Table: schema + ".outbox"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MigrateUp(context.Background()); err != nil {
		t.Fatalf("MigrateUp: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	dialecttest.Run(t, func(t *testing.T) dialect.Store { return newStore(t) })
}

// TestUnreadableRows: rows written by plain SQL that no relay can decode go to the dead
// letters, naming the column, and the rest of their key flows on.
func TestUnreadableRows(t *testing.T) {
	t.Parallel()
	dialecttest.RunUnreadable(t, func(t *testing.T) dialect.Store { return newStore(t) }, dialecttest.Raw{
		Exec: func(ctx context.Context, s dialect.Store, stmt string) error {
			ps := s.(*postgres.Store)
			stmt = strings.NewReplacer("{table}", postgres.TableOf(ps), "{dead}", postgres.DeadOf(ps)).Replace(stmt)
			_, err := ps.Pool().Exec(ctx, stmt)
			return err
		},
		InsertID: `INSERT INTO {table} (message_id, topic, key) VALUES ('{id}', 'orders.created', 'a')`,
		Cases:    dialecttest.PostgresUnreadable,
	})
}

// TestMigrationStatusCreatesNothing: reading the migration status of a table in a schema that
// does not exist creates neither the schema nor a table.
func TestMigrationStatusCreatesNothing(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.Schema(t)
	ctx := context.Background()
	s, err := postgres.New(ctx, postgres.Config{Pool: pool, Table: schema + "_none.outbox"})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.MigrationStatus(ctx)
	if err != nil || len(st) == 0 || st[0].Applied {
		t.Fatalf("MigrationStatus = %+v, %v; want every migration unapplied", st, err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, schema+"_none").Scan(&n); err != nil || n != 0 {
		t.Fatalf("schema created by MigrationStatus (%d, %v)", n, err)
	}
}

// TestApplicationName: a store opened from a URL names its sessions outbox-relay, unless the
// URL names them.
func TestApplicationName(t *testing.T) {
	service.Require(t, "PostgreSQL")
	t.Parallel()
	ctx := context.Background()
	for url, want := range map[string]string{
		pgtest.URL(): postgres.ApplicationName,
		pgtest.URL() + map[bool]string{true: "&", false: "?"}[strings.Contains(pgtest.URL(), "?")] + "application_name=mine": "mine",
	} {
		s, err := postgres.New(ctx, postgres.Config{URL: url})
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = s.Pool().QueryRow(ctx, `SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()`).Scan(&got)
		_ = s.Close()
		if err != nil || got != want {
			t.Fatalf("%s: application_name %q, %v; want %q", url, got, err, want)
		}
	}
}
