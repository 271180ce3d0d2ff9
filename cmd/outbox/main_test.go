package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	natsgo "github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

type result struct {
	code           int
	stdout, stderr string
}

// invocation is one in-process run of the command, with its own environment: tests never
// touch the process environment, so they can run in parallel.
type invocation struct {
	env   map[string]string
	stdin string
	// progressEvery is the app's progressInterval: 0 the default, less than 0 a progress line
	// at every step.
	progressEvery time.Duration
}

func (in invocation) run(t *testing.T, args ...string) result {
	t.Helper()
	return in.runCtx(t, context.Background(), args...)
}

func (in invocation) runCtx(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	var stdout, stderr logtest.Buffer
	a := &app{
		stdin:  strings.NewReader(in.stdin),
		stdout: &stdout,
		stderr: &stderr,
		getenv: func(k string) string { return in.env[k] },

		progressInterval: in.progressEvery,
		environ: func() []string {
			var kv []string
			for k, v := range in.env {
				kv = append(kv, k+"="+v)
			}
			return kv
		},
	}
	code := a.run(ctx, args)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func (r result) want(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

func (r result) contains(t *testing.T, fragments ...string) result {
	t.Helper()
	for _, f := range fragments {
		if !strings.Contains(r.stdout+r.stderr, f) {
			t.Fatalf("output lacks %q\nstdout:\n%s\nstderr:\n%s", f, r.stdout, r.stderr)
		}
	}
	return r
}

// sqliteEnv is an environment pointing at a fresh SQLite database file.
func sqliteEnv(t *testing.T) invocation {
	return invocation{env: map[string]string{
		"OUTBOX_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "outbox.db"),
	}}
}

// postgresEnv is an environment pointing at an outbox table in a fresh schema.
func postgresEnv(t *testing.T) invocation {
	_, schema := pgtest.Schema(t)
	return invocation{env: map[string]string{
		"OUTBOX_DATABASE_URL": pgtest.URL(),
		"OUTBOX_TABLE":        schema + ".outbox",
	}}
}

func statusJSONOf(t *testing.T, in invocation) statusJSON {
	t.Helper()
	r := in.run(t, "status", "--json").want(t, 0)
	var s statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return s
}

func TestQuickstart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := invocation{}.run(t, "quickstart", "--duration", "3s", "--dir", dir, "--rate", "10").want(t, 0)
	r.contains(t, "stream ORDERS on orders.>", "Summary", "lost              0")
	m := regexp.MustCompile(`orders committed\s+(\d+)`).FindStringSubmatch(r.stdout)
	n := regexp.MustCompile(`events received\s+(\d+) unique, 0 duplicate`).FindStringSubmatch(r.stdout)
	if m == nil || n == nil {
		t.Fatalf("no summary counts in:\n%s", r.stdout)
	}
	committed, _ := strconv.Atoi(m[1])
	received, _ := strconv.Atoi(n[1])
	if committed < 5 || received != committed {
		t.Fatalf("committed %d, received %d", committed, received)
	}
	if got := strings.Count(r.stdout, "< event   orders.created"); got != received {
		t.Fatalf("%d event lines, want %d", got, received)
	}
	if strings.Contains(r.stderr, "level=") {
		t.Fatalf("logs without --verbose:\n%s", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "quickstart.db")); err != nil {
		t.Fatal(err)
	}
}

func TestQuickstartFlags(t *testing.T) {
	t.Parallel()
	invocation{}.run(t, "quickstart", "--rate", "0").want(t, 2).contains(t, "--rate")
	invocation{}.run(t, "quickstart", "--duration", "-1s").want(t, 2).contains(t, "--duration")
}

func TestMigrateStatusPostgres(t *testing.T) {
	t.Parallel()
	in := postgresEnv(t)
	in.run(t, "migrate", "up").want(t, 0).contains(t, "applied migration 1")
	in.run(t, "migrate", "up").want(t, 0).contains(t, "up to date")
	r := in.run(t, "migrate", "status").want(t, 0).contains(t, "VERSION", "APPLIED")
	if !regexp.MustCompile(`(?m)^1\s+outbox\s+\d{4}-`).MatchString(r.stdout) {
		t.Fatalf("migration 1 not shown as applied:\n%s", r.stdout)
	}
	in.run(t, "status").want(t, 0).contains(t, "pending            0", "dead letters       0", "(postgres)")

	id := strings.TrimSpace(in.run(t, "enqueue", "--topic", "orders.created", "--key", "o-1",
		"--data", `{"id":"o-1"}`, "--header", "content-type=application/json").want(t, 0).stdout)
	if !regexp.MustCompile(`^[0-9a-f-]{36}$`).MatchString(id) {
		t.Fatalf("enqueue printed %q, want a message id", id)
	}
	s := statusJSONOf(t, in)
	if s.Pending != 1 || s.Ready != 1 || s.Retrying != 0 || s.DeadLetters != 0 || s.Dialect != "postgres" {
		t.Fatalf("status after one enqueue: %+v", s)
	}
	in.run(t, "dlq", "list").want(t, 0).contains(t, "no dead letters")
	in.run(t, "dlq", "list", "--json").want(t, 0).contains(t, "[]")
	in.run(t, "dlq", "retry", "--all").want(t, 0).contains(t, "moved 0 dead letter(s)")
	in.run(t, "dlq", "purge", "7").want(t, 1).contains(t, "deleted 0 dead letter(s)", "no dead letter with id 7")
	in.run(t, "dlq", "retry", "7", "9").want(t, 1).contains(t, "moved 0 dead letter(s)", "no dead letter with id 7 and 9")

	in.run(t, "migrate", "down").want(t, 0).contains(t, "reverted migration")
	in.run(t, "migrate", "down", "--all").want(t, 0).contains(t, "reverted migration 1")
	in.run(t, "migrate", "down").want(t, 0).contains(t, "nothing to revert")
	in.run(t, "status").want(t, 1).contains(t, "outbox migrate up")
}

func TestEnqueueStatusSQLite(t *testing.T) {
	t.Parallel()
	in := sqliteEnv(t)
	in.run(t, "status").want(t, 1).contains(t, "outbox migrate up")
	in.run(t, "migrate", "up").want(t, 0)
	in.run(t, "enqueue", "--topic", "t", "--data", "x").want(t, 0)
	s := statusJSONOf(t, in)
	if s.Pending != 1 || s.Ready != 1 || s.Dialect != "sqlite" {
		t.Fatalf("status: %+v", s)
	}

	file := filepath.Join(t.TempDir(), "payload.json")
	if err := os.WriteFile(file, []byte(`{"from":"file"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	in.run(t, "enqueue", "--topic", "t", "--file", file).want(t, 0)
	piped := in
	piped.stdin = `{"from":"stdin"}`
	piped.run(t, "enqueue", "--topic", "t", "--key", "k", "--type", "thing.happened").want(t, 0)
	if s := statusJSONOf(t, in); s.Pending != 3 {
		t.Fatalf("pending = %d, want 3", s.Pending)
	}
	in.run(t, "status").want(t, 0).contains(t, "pending            3", "  ready            3", "live relays        0")
}

func TestRelayStdout(t *testing.T) {
	t.Parallel()
	in := sqliteEnv(t)
	in.run(t, "migrate", "up").want(t, 0)
	id := strings.TrimSpace(in.run(t, "enqueue", "--topic", "orders.created", "--key", "o-9", "--data", `{"n":9}`).want(t, 0).stdout)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		done <- in.runCtx(t, ctx, "relay", "--sink-type", "stdout", "--poll-interval", "10ms")
	}()
	waitFor(t, func() bool { return statusJSONOf(t, in).Pending == 0 })
	cancel() // as SIGINT does, through signal.NotifyContext
	r := (<-done).want(t, 0).contains(t, `"id":"`+id+`"`, `"payload":{"n":9}`, "relay started", "relay stopped")
	if !strings.Contains(r.stdout, `"key":"o-9"`) {
		t.Fatalf("stdout: %s", r.stdout)
	}
}

func TestRelayNATS(t *testing.T) {
	t.Parallel()
	srv := natstest.StartServer(t, nil)
	in := postgresEnv(t)
	in.env["OUTBOX_SINK_NATS_URL"] = srv.URL()
	in.run(t, "migrate", "up").want(t, 0)
	for _, data := range []string{"a1", "b1", "a2"} {
		in.run(t, "enqueue", "--topic", "orders.created", "--key", data[:1], "--data", data).want(t, 0)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		done <- in.runCtx(t, ctx, "relay", "--sink-nats-stream", "APP", "--sink-nats-subject-prefix", "app.",
			"--sink-nats-source", "test-service", "--poll-interval", "10ms", "--log-format", "json")
	}()
	waitFor(t, func() bool { return statusJSONOf(t, in).Pending == 0 })
	cancel()
	(<-done).want(t, 0).contains(t, `"msg":"relay started"`)

	nc := natstest.ConnectURL(t, srv.URL())
	rcv := natstest.Receiver(t, nc, "APP", "app.")
	rctx, rcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer rcancel()
	var aOrder []string
	for range 3 {
		m, err := rcv.Receive(rctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Topic != "orders.created" || m.Source != "test-service" {
			t.Fatalf("received %+v", m)
		}
		if m.Subject+string(m.Payload)[1:] != string(m.Payload) {
			t.Fatalf("key %q with payload %q", m.Subject, m.Payload)
		}
		if m.Subject == "a" {
			aOrder = append(aOrder, string(m.Payload))
		}
	}
	// Per-key order: a1 before a2 (b1 may come anywhere).
	if strings.Join(aOrder, ",") != "a1,a2" {
		t.Fatalf("key a received in order %v", aOrder)
	}
}

// waitFor polls cond until it holds, failing the test after 20s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestInvalidConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unknownKey := filepath.Join(dir, "unknown.yaml")
	if err := os.WriteFile(unknownKey, []byte("database_url: sqlite:x.db\npoll:\n  batchsize: 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badValue := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badValue, []byte("database_url: sqlite:x.db\nrelay:\n  backoff_max: 1ms\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db := "sqlite:" + filepath.Join(dir, "x.db")
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{name: "negative batch size from env", env: map[string]string{"OUTBOX_DATABASE_URL": db, "OUTBOX_POLL_BATCH_SIZE": "-5"},
			args: []string{"relay"}, want: []string{"poll.batch_size: must be between 1 and 100000", "OUTBOX_POLL_BATCH_SIZE"}},
		{name: "bad table name flag", env: map[string]string{"OUTBOX_DATABASE_URL": db},
			args: []string{"status", "--table", "bad name"}, want: []string{"table: ", "not allowed", "--table"}},
		{name: "bad table name env", env: map[string]string{"OUTBOX_DATABASE_URL": db, "OUTBOX_TABLE": "bad name"},
			args: []string{"migrate", "up"}, want: []string{"invalid configuration: table: "}},
		{name: "unknown yaml key", args: []string{"status", "--config", unknownKey},
			want: []string{"poll.batchsize: unknown key (line 3)"}},
		{name: "unknown yaml key via OUTBOX_CONFIG", env: map[string]string{"OUTBOX_CONFIG": unknownKey},
			args: []string{"relay"}, want: []string{"poll.batchsize: unknown key"}},
		{name: "bad value in yaml", args: []string{"relay", "--config", badValue},
			want: []string{"relay.backoff_max: must be at least relay.backoff_base", badValue}},
		{name: "missing database", args: []string{"status"}, want: []string{"database_url: required"}},
		{name: "bad duration flag", env: map[string]string{"OUTBOX_DATABASE_URL": db},
			args: []string{"relay", "--poll-interval", "5"}, want: []string{"poll.interval: \"5\" is not a duration", "--poll-interval"}},
		{name: "bad sink type", env: map[string]string{"OUTBOX_DATABASE_URL": db, "OUTBOX_SINK_TYPE": "rabbit"},
			args: []string{"relay"}, want: []string{"sink.type: "}},
		{name: "missing config file", args: []string{"status", "--config", filepath.Join(dir, "nope.yaml")},
			want: []string{"config file: ", "nope.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := invocation{env: tt.env}.run(t, tt.args...).want(t, 2)
			if r.stdout != "" {
				t.Errorf("stdout: %q", r.stdout)
			}
			r.contains(t, append([]string{"outbox: invalid configuration: "}, tt.want...)...)
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	in := sqliteEnv(t)
	in.run(t, "migrate", "up").want(t, 0)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"dlq", "retry"}, "needs dead-letter ids"},
		{[]string{"dlq", "purge"}, "needs dead-letter ids"},
		{[]string{"dlq", "retry", "1", "--all"}, "not both"},
		{[]string{"dlq", "retry", "x"}, `"x" is not a dead-letter id`},
		{[]string{"dlq", "list", "--limit", "0"}, "--limit"},
		{[]string{"dlq"}, "needs a subcommand"},
		{[]string{"dlq", "nope"}, `unknown dlq command "nope"`},
		{[]string{"migrate"}, "needs a subcommand"},
		{[]string{"migrate", "down", "--steps", "0"}, "--steps"},
		{[]string{"nope"}, `unknown command "nope"`},
		{[]string{"status", "--nope"}, "unknown flag: --nope"},
		{[]string{"status", "extra"}, "takes no arguments"},
		{[]string{"enqueue", "--data", "x"}, "--topic is required"},
		{[]string{"enqueue", "--topic", "t", "--header", "novalue"}, "want name=value"},
		{[]string{"enqueue", "--topic", "t", "--data", "x", "--header", "ce-id=1"}, "reserved"},
		{[]string{"enqueue", "--topic", "t", "--data", "x", "--file", "f"}, "either --data or --file"},
		{[]string{"relay", "--sink-type"}, "flag needs an argument"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			t.Parallel()
			in.run(t, tt.args...).want(t, 2).contains(t, tt.want)
		})
	}
}

func TestMigrateDownSQLite(t *testing.T) {
	t.Parallel()
	in := sqliteEnv(t)
	in.run(t, "migrate", "down").want(t, 1) // no database file yet
	in.run(t, "migrate", "up").want(t, 0)
	in.run(t, "migrate", "status").want(t, 0).contains(t, "outbox")
	in.run(t, "migrate", "down", "--all").want(t, 0).contains(t, "reverted migration 1")
	in.run(t, "migrate", "status").want(t, 0).contains(t, "no")
}

func TestHelpEverywhere(t *testing.T) {
	t.Parallel()
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		paths = append(paths, path)
		for _, sub := range c.Commands() {
			if sub.Name() != "help" {
				walk(sub, append(append([]string{}, path...), sub.Name()))
			}
		}
	}
	walk((&app{}).newRoot(), nil)
	if len(paths) < 12 {
		t.Fatalf("only %d commands: %v", len(paths), paths)
	}
	for _, p := range paths {
		r := invocation{}.run(t, append(p, "--help")...).want(t, 0)
		r.contains(t, "Usage:", "--config")
	}
	invocation{}.run(t, "relay", "--help").want(t, 0).contains(t, "--poll-batch-size", "OUTBOX_POLL_BATCH_SIZE", "(default 1000)", "--migrate")
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	srv := natstest.StartServer(t, nil)
	in := sqliteEnv(t)
	in.env["OUTBOX_SINK_NATS_URL"] = srv.URL()
	in.run(t, "migrate", "up").want(t, 0)
	// A space is fine in a topic but not in a NATS subject: the sink rejects it permanently.
	id := strings.TrimSpace(in.run(t, "enqueue", "--topic", "bad topic", "--key", "k", "--data", "x").want(t, 0).stdout)
	relayUntil := func(cond func(statusJSON) bool) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan result, 1)
		go func() { done <- in.runCtx(t, ctx, "relay", "--poll-interval", "10ms") }()
		waitFor(t, func() bool { return cond(statusJSONOf(t, in)) })
		cancel()
		(<-done).want(t, 0)
	}
	relayUntil(func(s statusJSON) bool { return s.DeadLetters == 1 })

	in.run(t, "dlq", "list").want(t, 0).contains(t, "MESSAGE ID", id, "bad topic", "invalid NATS subject")
	r := in.run(t, "dlq", "list", "--json").want(t, 0)
	var dls []deadLetterJSON
	if err := json.Unmarshal([]byte(r.stdout), &dls); err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].MessageID != id || dls[0].Key != "k" || string(dls[0].Payload) != "x" || dls[0].Attempts != 1 {
		t.Fatalf("dlq list --json: %+v", dls)
	}
	dlID := strconv.FormatInt(dls[0].ID, 10)
	in.run(t, "dlq", "list", "--after", dlID).want(t, 0).contains(t, "no dead letters")
	in.run(t, "dlq", "list", "--limit", "1").want(t, 0).contains(t, "more may follow: --after "+dlID)

	in.run(t, "dlq", "retry", dlID).want(t, 0).contains(t, "moved 1 dead letter(s)")
	if s := statusJSONOf(t, in); s.Pending != 1 || s.DeadLetters != 0 {
		t.Fatalf("after retry: %+v", s)
	}
	relayUntil(func(s statusJSON) bool { return s.DeadLetters == 1 })
	in.run(t, "dlq", "purge", "--all").want(t, 0).contains(t, "deleted 1 dead letter(s)")
	if s := statusJSONOf(t, in); s.Pending != 0 || s.DeadLetters != 0 {
		t.Fatalf("after purge: %+v", s)
	}
}

// TestQuickstartInterrupt stops quickstart as Ctrl-C does: it still delivers what was
// committed and exits 0.
func TestQuickstartInterrupt(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr logtest.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	done := make(chan int, 1)
	go func() { done <- a.run(ctx, []string{"quickstart", "--rate", "50"}) }()
	waitFor(t, func() bool { return strings.Count(stdout.String(), "< event") >= 3 })
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit code %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "lost              0") {
		t.Fatalf("stdout:\n%s", stdout.String())
	}
}

func TestTally(t *testing.T) {
	t.Parallel()
	tl := newTally()
	ids := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
	now := time.Now()
	header := func(id uuid.UUID, age time.Duration) natsgo.Header {
		return natsgo.Header{"ce-id": {id.String()}, "ce-subject": {"k"}, "ce-time": {now.Add(-age).Format(time.RFC3339Nano)}}
	}
	// The consumer may see an event before the producer noted its commit.
	tl.receive(header(ids[0], 10*time.Millisecond), now)
	for _, id := range ids {
		tl.commit(id, "k")
	}
	if tl.allReceived() {
		t.Fatal("allReceived with two events missing")
	}
	tl.receive(header(ids[1], 30*time.Millisecond), now)
	if ev := tl.receive(header(ids[1], 30*time.Millisecond), now); ev.note == "" {
		t.Fatal("duplicate not noted")
	}
	tl.receive(header(uuid.New(), time.Millisecond), now) // from an earlier run
	tl.receive(natsgo.Header{"ce-id": {"nope"}}, now)
	s := tl.summary()
	want := quickstartSummary{committed: 3, received: 2, duplicates: 1, foreign: 2, lost: 1,
		p50: 10 * time.Millisecond, p99: 30 * time.Millisecond}
	if s != want {
		t.Fatalf("summary %+v, want %+v", s, want)
	}
}

func TestRelayNeedsTables(t *testing.T) {
	t.Parallel()
	in := postgresEnv(t)
	in.run(t, "relay", "--sink-type", "stdout").want(t, 1).contains(t, "outbox migrate up")
	sq := sqliteEnv(t)
	sq.run(t, "relay", "--sink-type", "stdout").want(t, 1).contains(t, "outbox migrate up")
}

func TestRelayMigrateFlag(t *testing.T) {
	t.Parallel()
	in := sqliteEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		done <- in.runCtx(t, ctx, "relay", "--migrate", "--sink-type", "stdout", "--relay-id", "relay-under-test")
	}()
	// The relay created the tables and registered itself.
	waitFor(t, func() bool {
		r := in.run(t, "status", "--json")
		return r.code == 0 && strings.Contains(r.stdout, `"live_relays": 1`)
	})
	cancel()
	(<-done).want(t, 0).contains(t, "migrations applied", "relay_id=relay-under-test")
	if s := statusJSONOf(t, in); s.LiveRelays != 0 {
		t.Fatalf("relay still registered after stopping: %+v", s)
	}
}

// TestMigrateInbox: --inbox manages the consumer inbox's tables, by their own migrations,
// next to the outbox's and without touching them.
func TestMigrateInbox(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]func(*testing.T) invocation{"sqlite": sqliteEnv, "postgres": postgresEnv} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			in := env(t)
			in.run(t, "migrate", "up").want(t, 0).contains(t, "applied migration 1")
			in.run(t, "migrate", "up", "--inbox", "billing_inbox").want(t, 0).contains(t, "applied migration 1")
			in.run(t, "migrate", "up", "--inbox", "billing_inbox").want(t, 0).contains(t, "billing_inbox is up to date")
			r := in.run(t, "migrate", "status", "--inbox", "billing_inbox").want(t, 0)
			if !regexp.MustCompile(`(?m)^1\s+inbox\s+\d{4}-`).MatchString(r.stdout) {
				t.Fatalf("inbox migration 1 not shown as applied:\n%s", r.stdout)
			}
			in.run(t, "migrate", "down", "--all", "--inbox", "billing_inbox").want(t, 0).contains(t, "reverted migration 1")
			in.run(t, "migrate", "status", "--inbox", "billing_inbox").want(t, 0).contains(t, "no")
			// the outbox's tables are untouched
			in.run(t, "status").want(t, 0).contains(t, "pending            0")
			in.run(t, "migrate", "up", "--inbox", "bad name;").want(t, 2).contains(t, "--inbox")
		})
	}
}

// TestStatusWatch: --watch repeats the status until interrupted and exits 0; with --json one
// object per line, with the backlog's change per second from the second line on.
func TestStatusWatch(t *testing.T) {
	t.Parallel()
	in := sqliteEnv(t)
	in.run(t, "migrate", "up").want(t, 0)
	in.run(t, "enqueue", "--topic", "a", "--data", `{}`).want(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	r := in.runCtx(t, ctx, "status", "--watch", "200ms", "--json", "--max-dead", "-1", "--max-age", "1ns").want(t, 0)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) < 3 {
		t.Fatalf("%d lines in 700ms at 200ms, want 3 or more:\n%s", len(lines), r.stdout)
	}
	for i, l := range lines {
		var w struct {
			Pending  int64    `json:"pending"`
			Healthy  bool     `json:"healthy"`
			PerSec   *float64 `json:"pending_per_second"`
			Problems []string `json:"problems"`
		}
		if err := json.Unmarshal([]byte(l), &w); err != nil {
			t.Fatalf("line %d: %v: %s", i, err, l)
		}
		if w.Pending != 1 || w.Healthy || len(w.Problems) != 1 || (i == 0) != (w.PerSec == nil) {
			t.Fatalf("line %d: %s", i, l)
		}
	}
	in.run(t, "status", "--watch", "1ms").want(t, 2).contains(t, "--watch")
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	in.runCtx(t, ctx2, "status", "--watch", "100ms").want(t, 0).contains(t, "every 100ms", "pending            1")
}
