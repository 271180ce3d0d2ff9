package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/sqlite"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

// deadLetters is how many dead letters the --all tests make: more than two batches.
const deadLetters = 12000

// progressLines returns the lines of stderr that start with label.
func progressLines(stderr, label string) []string {
	var out []string
	for l := range strings.Lines(stderr) {
		if strings.HasPrefix(l, label+": ") {
			out = append(out, strings.TrimSuffix(l, "\n"))
		}
	}
	return out
}

// wantProgress checks that stderr has a progress line per batch starting with each of want,
// then the final line.
func wantProgress(t *testing.T, r result, label string, want ...string) {
	t.Helper()
	got := progressLines(r.stderr, label)
	if len(got) != len(want)+1 {
		t.Fatalf("%d progress lines, want %d (one per batch and the last):\n%s", len(got), len(want)+1, r.stderr)
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], label+": "+w) {
			t.Fatalf("progress line %d = %q, want it to start with %q", i+1, got[i], label+": "+w)
		}
	}
	if last := got[len(got)-1]; !strings.Contains(last, "done in") {
		t.Fatalf("last progress line %q lacks the time taken", last)
	}
}

// 'dlq retry --all' on PostgreSQL moves the dead letters 5,000 per transaction, in their
// order; when a batch fails, the batches before it stay done, that batch and the rest stay
// dead letters, and running it again finishes the job. 'dlq purge --all' deletes in batches.
func TestDLQAllBatchesPostgres(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.Schema(t)
	in := invocation{env: map[string]string{"OUTBOX_DATABASE_URL": pgtest.URL(), "OUTBOX_TABLE": schema + ".outbox"}, progressEvery: -1}
	in.run(t, "migrate", "up").want(t, 0)
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	count := func(table string) int64 {
		t.Helper()
		var n int64
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+schema+"."+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	fill := func(poison int) {
		t.Helper()
		exec(`INSERT INTO `+schema+`.outbox_dead (original_id, message_id, topic, key, payload, created_at, attempts, last_error)
SELECT g, gen_random_uuid(), CASE WHEN g = $2 THEN 'poison' ELSE 'orders' END, 'k' || (g % 10), convert_to('m' || g, 'UTF8'), now(), 3, 'boom'
FROM generate_series(1, $1::int) g`, deadLetters, poison)
	}
	// A trigger refuses the message of topic poison back into the outbox: the second batch
	// (dead letters 5,001 to 10,000) fails.
	fill(7000)
	exec(`CREATE FUNCTION ` + schema + `.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN IF NEW.topic = 'poison' THEN RAISE EXCEPTION 'poison message refused'; END IF; RETURN NEW; END $$`)
	exec(`CREATE TRIGGER refuse BEFORE INSERT ON ` + schema + `.outbox FOR EACH ROW EXECUTE FUNCTION ` + schema + `.refuse()`)

	r := in.run(t, "dlq", "retry", "--all").want(t, 1).contains(t, "poison message refused",
		"5000 dead letter(s) moved back into the outbox before the error, the others are intact", "dlq retry --all' again")
	wantProgress(t, r, "dlq retry", "5000/12000 (41%)")
	if o, d := count("outbox"), count("outbox_dead"); o != 5000 || d != 7000 {
		t.Fatalf("after the failed retry: %d in the outbox, %d dead letters; want 5000 and 7000", o, d)
	}

	exec(`DROP TRIGGER refuse ON ` + schema + `.outbox`)
	r = in.run(t, "dlq", "retry", "--all").want(t, 0)
	if r.stdout != "moved 7000 dead letter(s) back into the outbox\n" {
		t.Fatalf("stdout = %q", r.stdout)
	}
	wantProgress(t, r, "dlq retry", "5000/7000 (71%)", "7000/7000 (100%)")
	if o, d := count("outbox"), count("outbox_dead"); o != deadLetters || d != 0 {
		t.Fatalf("after the retries: %d in the outbox, %d dead letters; want %d and 0", o, d, deadLetters)
	}
	// In their order: the outbox's n-th row is the dead letter m<n>.
	var misplaced int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT payload, row_number() OVER (ORDER BY id) AS n FROM `+schema+`.outbox) o
WHERE o.payload <> convert_to('m' || o.n, 'UTF8')`).Scan(&misplaced); err != nil || misplaced != 0 {
		t.Fatalf("%d messages out of order (%v)", misplaced, err)
	}

	fill(0)
	r = in.run(t, "dlq", "purge", "--all").want(t, 0)
	if r.stdout != fmt.Sprintf("deleted %d dead letter(s)\n", deadLetters) {
		t.Fatalf("stdout = %q", r.stdout)
	}
	wantProgress(t, r, "dlq purge", "5000/12000 (41%)", "10000/12000 (83%)", "12000/12000 (100%)")
	if d := count("outbox_dead"); d != 0 {
		t.Fatalf("%d dead letters after the purge", d)
	}
	// --no-progress: no progress lines.
	fill(0)
	r = in.run(t, "dlq", "retry", "--all", "--no-progress").want(t, 0).contains(t, "moved 12000 dead letter(s)")
	if lines := progressLines(r.stderr, "dlq retry"); len(lines) != 0 {
		t.Fatalf("--no-progress wrote %q", lines)
	}
}

// 'dlq retry --all' and 'dlq purge --all' on SQLite, in batches.
func TestDLQAllBatchesSQLite(t *testing.T) {
	t.Parallel()
	in := sqliteEnv(t)
	in.progressEvery = -1
	in.run(t, "migrate", "up").want(t, 0)
	ctx := context.Background()
	st, err := sqlite.New(ctx, sqlite.Config{Path: strings.TrimPrefix(in.env["OUTBOX_DATABASE_URL"], "sqlite:")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	count := func(table string) int64 {
		t.Helper()
		var n int64
		if err := st.DB().QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	fill := func() {
		t.Helper()
		now := time.Now().UnixMicro()
		if _, err := st.DB().ExecContext(ctx, `WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?)
INSERT INTO outbox_dead (original_id, message_id, topic, key, payload, created_at, attempts, last_error, failed_at)
SELECT n, printf('00000000-0000-7000-8000-%012d', n), 'orders', 'k' || (n % 10), CAST('m' || n AS BLOB), ?, 3, 'boom', ? FROM g`,
			deadLetters, now, now); err != nil {
			t.Fatal(err)
		}
	}
	fill()
	r := in.run(t, "dlq", "purge", "--all").want(t, 0).contains(t, "deleted 12000 dead letter(s)")
	wantProgress(t, r, "dlq purge", "5000/12000 (41%)", "10000/12000 (83%)", "12000/12000 (100%)")
	fill()
	r = in.run(t, "dlq", "retry", "--all").want(t, 0).contains(t, "moved 12000 dead letter(s) back into the outbox")
	wantProgress(t, r, "dlq retry", "5000/12000 (41%)", "10000/12000 (83%)", "12000/12000 (100%)")
	if o, d := count("outbox"), count("outbox_dead"); o != deadLetters || d != 0 {
		t.Fatalf("after the retry: %d in the outbox, %d dead letters; want %d and 0", o, d, deadLetters)
	}
	if s := statusJSONOf(t, in); s.Pending != deadLetters {
		t.Fatalf("status: pending %d", s.Pending)
	}
}

// adminOnly hides every method of a store but dialect.Admin's, as a store that cannot list
// dead letter ids alone (dialect.DeadLetterIDLister) would be.
type adminOnly struct{ dialect.Admin }

// deadLetterIDs pages the same ids whether the store lists them alone or only whole dead
// letters.
func TestDeadLetterIDsFallback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := sqlite.New(ctx, sqlite.Config{Path: t.TempDir() + "/dead.db"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMicro()
	if _, err := st.DB().ExecContext(ctx, `WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 7)
INSERT INTO outbox_dead (original_id, message_id, topic, key, payload, created_at, attempts, last_error, failed_at)
SELECT n, printf('00000000-0000-7000-8000-%012d', n), 'orders', 'k', CAST('m' || n AS BLOB), ?, 3, 'boom', ? FROM g`, now, now); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		st   dialect.Admin
	}{{"ids", st}, {"whole dead letters", adminOnly{st}}} {
		var got []int64
		for after := int64(0); ; {
			page, err := deadLetterIDs(ctx, tc.st, after, 3)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, page...)
			if len(page) < 3 {
				break
			}
			after = page[len(page)-1]
		}
		if want := []int64{1, 2, 3, 4, 5, 6, 7}; !slices.Equal(got, want) {
			t.Errorf("%s: ids %v, want %v", tc.name, got, want)
		}
	}
	if _, ok := dialect.Admin(adminOnly{st}).(dialect.DeadLetterIDLister); ok {
		t.Fatal("adminOnly lists ids alone")
	}
}
