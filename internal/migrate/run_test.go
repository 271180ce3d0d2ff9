package migrate

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox/dialect"
)

// memDriver is a Driver over memory whose sessions are transactions: a failed session leaves
// the applied versions as they were.
type memDriver struct {
	applied  map[int]time.Time
	log      []string // scripts run and versions recorded, in order
	failExec string   // a script that fails
	sessions int
}

type memSession struct {
	d       *memDriver
	applied map[int]time.Time
}

func (d *memDriver) Session(ctx context.Context, fn func(Session) error) error {
	d.sessions++
	s := &memSession{d: d, applied: maps.Clone(d.applied)}
	if s.applied == nil {
		s.applied = map[int]time.Time{}
	}
	if err := fn(s); err != nil {
		return err
	}
	d.applied = s.applied
	return nil
}

func (d *memDriver) Applied(context.Context) (map[int]time.Time, error) {
	return maps.Clone(d.applied), nil
}

func (s *memSession) Applied(context.Context) (map[int]time.Time, error) {
	return maps.Clone(s.applied), nil
}

func (s *memSession) Exec(_ context.Context, script string) error {
	if script == s.d.failExec {
		return errors.New("boom")
	}
	s.d.log = append(s.d.log, script)
	return nil
}

func (s *memSession) Record(_ context.Context, m Migration) error {
	s.applied[m.Version] = time.Unix(int64(m.Version), 0)
	s.d.log = append(s.d.log, "record "+m.Name)
	return nil
}

func (s *memSession) Unrecord(_ context.Context, version int) error {
	delete(s.applied, version)
	s.d.log = append(s.d.log, "unrecord "+strconv.Itoa(version))
	return nil
}

func testMigrations() []Migration {
	return []Migration{
		{Version: 1, Name: "a", Up: "up a", Down: "down a"},
		{Version: 2, Name: "b", Up: "up b", Down: "down b"},
		{Version: 3, Name: "c", Up: "up c", Down: "down c"},
	}
}

// TestRunner: the loop applies pending migrations in version order, recording each; reverts
// newest first; refuses to revert nothing; and reports status.
func TestRunner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := &memDriver{}
	r := Runner{Load: func() ([]Migration, error) { return testMigrations(), nil }, Driver: d}

	st, err := r.MigrationStatus(ctx)
	if err != nil || len(st) != 3 || st[0].Applied || st[2].Applied {
		t.Fatalf("status before = %+v, %v; want 3 migrations, none applied", st, err)
	}
	up, err := r.MigrateUp(ctx)
	if err != nil || !slices.Equal(up, []int{1, 2, 3}) {
		t.Fatalf("MigrateUp = %v, %v; want [1 2 3]", up, err)
	}
	if want := []string{"up a", "record a", "up b", "record b", "up c", "record c"}; !slices.Equal(d.log, want) {
		t.Fatalf("ran %q, want %q", d.log, want)
	}
	if up, err := r.MigrateUp(ctx); err != nil || len(up) != 0 {
		t.Fatalf("second MigrateUp = %v, %v; want nothing", up, err)
	}
	st, err = r.MigrationStatus(ctx)
	if err != nil || !st[0].Applied || !st[2].Applied || !st[1].AppliedAt.Equal(time.Unix(2, 0)) || st[1].Name != "b" {
		t.Fatalf("status after up = %+v, %v", st, err)
	}

	d.log = nil
	down, err := r.MigrateDown(ctx, 1)
	if err != nil || !slices.Equal(down, []int{3}) {
		t.Fatalf("MigrateDown(1) = %v, %v; want [3]", down, err)
	}
	down, err = r.MigrateDown(ctx, 0)
	if err != nil || !slices.Equal(down, []int{2, 1}) {
		t.Fatalf("MigrateDown(0) = %v, %v; want [2 1]", down, err)
	}
	if want := []string{"down c", "unrecord 3", "down b", "unrecord 2", "down a", "unrecord 1"}; !slices.Equal(d.log, want) {
		t.Fatalf("ran %q, want %q", d.log, want)
	}
	if _, err := r.MigrateDown(ctx, 0); !errors.Is(err, dialect.ErrNoMigrations) {
		t.Fatalf("MigrateDown with nothing applied: %v, want ErrNoMigrations", err)
	}
}

// TestRunnerFailure: a failing script ends the session with an error naming the migration,
// and what the session did is not kept.
func TestRunnerFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d := &memDriver{failExec: "up b"}
	r := Runner{Load: func() ([]Migration, error) { return testMigrations(), nil }, Driver: d}
	up, err := r.MigrateUp(ctx)
	if err == nil || up != nil || !strings.Contains(err.Error(), "applying migration 2_b: boom") {
		t.Fatalf("MigrateUp = %v, %v; want the error of migration 2_b", up, err)
	}
	if len(d.applied) != 0 {
		t.Fatalf("applied %v after a failed session, want nothing", d.applied)
	}
	loadErr := errors.New("no files")
	r.Load = func() ([]Migration, error) { return nil, loadErr }
	if _, err := r.MigrateUp(ctx); !errors.Is(err, loadErr) {
		t.Fatalf("MigrateUp with a load error: %v", err)
	}
	if _, err := r.MigrationStatus(ctx); !errors.Is(err, loadErr) {
		t.Fatalf("MigrationStatus with a load error: %v", err)
	}
	if d.sessions != 1 {
		t.Fatalf("%d sessions, want 1 (none when loading fails)", d.sessions)
	}
}
