package dialecttest

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
)

// Raw writes rows with plain SQL, as producers in other languages (or people) do.
type Raw struct {
	// Exec runs one statement on s's database. In stmt, {table} stands for s's outbox table
	// and {dead} for its dead-letter table, both as they are written in SQL (quoted,
	// qualified).
	Exec func(ctx context.Context, s dialect.Store, stmt string) error
	// InsertID inserts a message whose message_id is {id}, as written (for the canonical
	// form check).
	InsertID string
	// Cases are the dialect's unreadable rows: SQLiteUnreadable, PostgresUnreadable or
	// MySQLUnreadable.
	Cases []UnreadableCase
}

// UnreadableCase is a row its table accepts but no relay can decode.
type UnreadableCase struct {
	Name string
	// Setup runs first: statements that let the row in, or make the dead-letter table
	// stricter than the outbox table.
	Setup []string
	// Insert writes the row, with topic 'orders.created', key 'k' and a message_id of its own.
	Insert string
	// Column is the column the dead letter's reason must name.
	Column string
	// Salvaged: the row cannot be copied whole into the dead-letter table; its dead letter
	// must still be written, saying so.
	Salvaged bool
}

// SQLiteUnreadable are the unreadable rows of a SQLite outbox table.
var SQLiteUnreadable = []UnreadableCase{
	{Name: "MessageIDNotUUID", Column: "message_id",
		Insert: `INSERT INTO {table} (message_id, topic, key) VALUES ('not-a-uuid', 'orders.created', 'k')`},
	{Name: "MessageIDInteger", Column: "message_id",
		Insert: `INSERT INTO {table} (message_id, topic, key) VALUES (42, 'orders.created', 'k')`},
	{Name: "TopicInvalidUTF8", Column: "topic",
		Insert: `INSERT INTO {table} (message_id, topic, key) VALUES ('00000000-0000-4000-8000-000000000001', CAST(x'6f80' AS TEXT), 'k')`},
	{Name: "TypeInvalidUTF8", Column: "type",
		Insert: `INSERT INTO {table} (message_id, topic, key, type) VALUES ('00000000-0000-4000-8000-000000000001', 'orders.created', 'k', CAST(x'ff' AS TEXT))`},
	{Name: "HeadersInvalidUTF8", Column: "headers",
		Insert: `INSERT INTO {table} (message_id, topic, key, headers) VALUES ('00000000-0000-4000-8000-000000000001', 'orders.created', 'k', CAST(x'7b2261223a2280227d' AS TEXT))`},
	{Name: "AttemptsNegative", Column: "attempts",
		Insert: `INSERT INTO {table} (message_id, topic, key, attempts) VALUES ('00000000-0000-4000-8000-000000000001', 'orders.created', 'k', -1)`},
	{Name: "AttemptsHuge", Column: "attempts",
		Insert: `INSERT INTO {table} (message_id, topic, key, attempts) VALUES ('00000000-0000-4000-8000-000000000001', 'orders.created', 'k', 9223372036854775807)`},
	{Name: "AttemptsText", Column: "attempts",
		Insert: `INSERT INTO {table} (message_id, topic, key, attempts) VALUES ('00000000-0000-4000-8000-000000000001', 'orders.created', 'k', 'many')`},
	{Name: "AttemptsFraction", Column: "attempts",
		Insert: `INSERT INTO {table} (message_id, topic, key, attempts) VALUES ('00000000-0000-4000-8000-000000000001', 'orders.created', 'k', 1.5)`},
	{Name: "CreatedAtOutOfRange", Column: "created_at",
		Insert: `INSERT INTO {table} (message_id, topic, key, created_at) VALUES ('00000000-0000-4000-8000-000000000001', 'orders.created', 'k', 9223372036854775807)`},
	{Name: "DeadTableRefusesMessageID", Column: "message_id", Salvaged: true,
		Setup: []string{`CREATE TRIGGER dead_strict BEFORE INSERT ON {dead}
WHEN NEW.message_id NOT GLOB '[0-9a-f]*-*' BEGIN SELECT RAISE(ABORT, 'message_id is not a UUID'); END`},
		Insert: `INSERT INTO {table} (message_id, topic, key) VALUES ('not-a-uuid', 'orders.created', 'k')`},
}

// PostgresUnreadable are the unreadable rows of a PostgreSQL outbox table.
var PostgresUnreadable = []UnreadableCase{
	{Name: "CreatedAtInfinity", Column: "created_at",
		Insert: `INSERT INTO {table} (message_id, topic, key, created_at) VALUES (gen_random_uuid(), 'orders.created', 'k', 'infinity')`},
	{Name: "CreatedAtMinusInfinity", Column: "created_at",
		Insert: `INSERT INTO {table} (message_id, topic, key, created_at) VALUES (gen_random_uuid(), 'orders.created', 'k', '-infinity')`},
	{Name: "AvailableAtInfinity", Column: "available_at",
		Insert: `INSERT INTO {table} (message_id, topic, key, available_at) VALUES (gen_random_uuid(), 'orders.created', 'k', 'infinity')`},
	{Name: "AvailableAtMinusInfinity", Column: "available_at",
		Insert: `INSERT INTO {table} (message_id, topic, key, available_at) VALUES (gen_random_uuid(), 'orders.created', 'k', '-infinity')`},
	{Name: "AttemptsNegative", Column: "attempts",
		Insert: `INSERT INTO {table} (message_id, topic, key, attempts) VALUES (gen_random_uuid(), 'orders.created', 'k', -1)`},
	{Name: "AttemptsMax", Column: "attempts",
		Insert: `INSERT INTO {table} (message_id, topic, key, attempts) VALUES (gen_random_uuid(), 'orders.created', 'k', 2147483647)`},
	{Name: "HeadersArray", Column: "headers",
		// A row from before the headers check (it is NOT VALID: old rows are not rescanned).
		Setup:  []string{`ALTER TABLE {table} DROP CONSTRAINT outbox_headers_object`},
		Insert: `INSERT INTO {table} (message_id, topic, key, headers) VALUES (gen_random_uuid(), 'orders.created', 'k', '[1, 2]')`},
	{Name: "DeadTableRefusesCreatedAt", Column: "created_at", Salvaged: true,
		Setup:  []string{`ALTER TABLE {dead} ADD CONSTRAINT dead_strict CHECK (isfinite(created_at))`},
		Insert: `INSERT INTO {table} (message_id, topic, key, created_at) VALUES (gen_random_uuid(), 'orders.created', 'k', '-infinity')`},
}

// MySQLUnreadable are the unreadable rows of a MySQL or MariaDB outbox table. Some need
// MariaDB's SET STATEMENT to get past strict mode, as a session with another sql_mode does.
var MySQLUnreadable = []UnreadableCase{
	{Name: "MessageIDNotUUID", Column: "message_id",
		Insert: "INSERT INTO {table} (message_id, topic, `key`) VALUES ('not-a-uuid', 'orders.created', 'k')"},
	{Name: "AttemptsNegative", Column: "attempts",
		Insert: "INSERT INTO {table} (message_id, topic, `key`, attempts) VALUES (UUID(), 'orders.created', 'k', -1)"},
	{Name: "AttemptsMax", Column: "attempts",
		Insert: "INSERT INTO {table} (message_id, topic, `key`, attempts) VALUES (UUID(), 'orders.created', 'k', 2147483647)"},
	{Name: "CreatedAtZero", Column: "created_at",
		Insert: "SET STATEMENT sql_mode = '' FOR INSERT INTO {table} (message_id, topic, `key`, created_at) VALUES (UUID(), 'orders.created', 'k', '0000-00-00 00:00:00')"},
	{Name: "DeadTableRefusesMessageID", Column: "message_id", Salvaged: true,
		Setup:  []string{"ALTER TABLE {dead} ADD CONSTRAINT dead_strict CHECK (message_id LIKE '________-____-____-____-____________')"},
		Insert: "INSERT INTO {table} (message_id, topic, `key`) VALUES ('not-a-uuid', 'orders.created', 'k')"},
}

// RunUnreadable checks that every case's row goes to the dead-letter table with a reason
// naming its column, while the rest of its key and of the table flows on in order: the
// claim holds the row (its key's later messages can be in the same claim) and the claim's
// Finish dead-letters it, whatever the outcome.
func RunUnreadable(t *testing.T, newStore NewStore, raw Raw) {
	t.Run("CanonicalMessageID", func(t *testing.T) { t.Parallel(); testCanonicalMessageID(t, newStore(t), raw) })
	for _, tc := range raw.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			testUnreadable(t, newStore(t), raw.Exec, tc)
		})
	}
}

func testUnreadable(t *testing.T, s dialect.Store, exec func(context.Context, dialect.Store, string) error, tc UnreadableCase) {
	ctx := ctxT(t)
	for _, stmt := range tc.Setup {
		if err := exec(ctx, s, stmt); err != nil {
			t.Fatalf("setup %q: %v", stmt, err)
		}
	}
	mustEnqueue(t, s, msg("k", 1), msg("a", 1))
	if err := exec(ctx, s, tc.Insert); err != nil {
		t.Fatalf("inserting the unreadable row: %v", err)
	}
	mustEnqueue(t, s, msg("k", 3), msg("a", 2))

	// A claim released unchanged still dead-letters the row: it can never be published.
	c := mustClaim(t, s, dialect.ClaimRequest{})
	if got := payloads(c.Records()); !slices.Equal(got, []string{`k{"n":1}`, `a{"n":1}`, `k{"n":3}`, `a{"n":2}`}) {
		t.Fatalf("first claim = %v, want every readable row, k3 with k1", got)
	}
	first := c.Records()
	finish(t, c, outbox.Outcome{})
	dls, err := s.DeadLetters(ctx, 0, 10)
	if err != nil {
		t.Fatalf("DeadLetters: %v", err)
	}
	if len(dls) != 1 {
		t.Fatalf("dead letters = %+v, want the unreadable row", dls)
	}
	d := dls[0]
	if !strings.Contains(d.LastError, "column "+tc.Column) {
		t.Fatalf("dead letter reason %q does not name column %s", d.LastError, tc.Column)
	}
	if salvaged := strings.Contains(d.LastError, "could not be copied"); salvaged != tc.Salvaged {
		t.Fatalf("dead letter reason %q: salvaged = %v, want %v", d.LastError, salvaged, tc.Salvaged)
	}
	if d.Record.Seq <= first[1].Seq || d.Record.Seq >= first[2].Seq || d.Record.Key != "k" ||
		(tc.Column != "topic" && d.Record.Topic != "orders.created") {
		t.Fatalf("dead letter record = %+v, want the row inserted between a1 and k3", d.Record)
	}

	// The rest flows: the same rows again, in order, and nothing is left.
	c = mustClaim(t, s, dialect.ClaimRequest{})
	if got := payloads(c.Records()); !slices.Equal(got, []string{`k{"n":1}`, `a{"n":1}`, `k{"n":3}`, `a{"n":2}`}) {
		t.Fatalf("second claim = %v, want the readable rows again", got)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	st, err := s.Stats(ctx)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.Pending != 0 || st.DeadLetters != 1 {
		t.Fatalf("Stats = %+v, want nothing pending and 1 dead letter", st)
	}
}
