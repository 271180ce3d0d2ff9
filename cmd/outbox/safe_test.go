package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
)

// fakeStore answers the read-side commands (status, dlq) from memory. Only the methods those
// commands call are implemented; the embedded nil interface makes any other call panic.
type fakeStore struct {
	dialect.Store
	stats dialect.Stats
	dead  []dialect.DeadLetter
	moved []int64 // ids RetryDeadLetters or PurgeDeadLetters removed, in order
}

func (f *fakeStore) Dialect() outbox.Dialect                      { return outbox.SQLite }
func (f *fakeStore) Close() error                                 { return nil }
func (f *fakeStore) Stats(context.Context) (dialect.Stats, error) { return f.stats, nil }
func (f *fakeStore) RetryDeadLetters(_ context.Context, ids []int64) (int64, error) {
	return f.remove(ids), nil
}
func (f *fakeStore) PurgeDeadLetters(_ context.Context, ids []int64) (int64, error) {
	return f.remove(ids), nil
}

func (f *fakeStore) DeadLetters(_ context.Context, after int64, limit int) ([]dialect.DeadLetter, error) {
	var out []dialect.DeadLetter
	for _, d := range f.dead {
		if d.ID > after && len(out) < limit {
			out = append(out, d)
		}
	}
	return out, nil
}

func (f *fakeStore) remove(ids []int64) int64 {
	var n int64
	f.dead = slices.DeleteFunc(f.dead, func(d dialect.DeadLetter) bool {
		if ids == nil || slices.Contains(ids, d.ID) {
			f.moved = append(f.moved, d.ID)
			n++
			return true
		}
		return false
	})
	return n
}

// runFake runs the command against st.
func runFake(t *testing.T, st *fakeStore, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	env := map[string]string{"OUTBOX_DATABASE_URL": "sqlite:unused.db"}
	a := &app{
		stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
		getenv:  func(k string) string { return env[k] },
		environ: func() []string { return []string{"OUTBOX_DATABASE_URL=sqlite:unused.db"} },
		openStore: func(context.Context, config.Config, *slog.Logger, bool) (dialect.Store, error) {
			return st, nil
		},
	}
	code := a.run(context.Background(), args)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func TestEscapeText(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"orders.created":    "orders.created",
		"ключ-ü-日本":         "ключ-ü-日本",
		"\x1b]0;pwned\x07":  `\x1b]0;pwned\x07`,
		"\x1b[2J\x1b[H":     `\x1b[2J\x1b[H`,
		"a\r\nb\tc":         `a\r\nb\tc`,
		"\u009b31m":         `\u009b31m`, // C1 CSI
		"evil\u202egnp.exe": `evil\u202egnp.exe`,
		"zero\u200bwidth":   `zero\u200bwidth`,
		"bad\xffutf8":       `bad\xffutf8`,
		"del\x7f":           `del\x7f`,
		"":                  "",
	} {
		if got := escapeText(in); got != want {
			t.Errorf("escapeText(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDLQListEscapesRowData: topics, keys and errors from the table cannot drive the terminal
// in the table output, and --json keeps them exact (escaped by JSON).
func TestDLQListEscapesRowData(t *testing.T) {
	t.Parallel()
	topic, key := "t\x1b]0;title\x07", "k\x1b[2J"
	st := &fakeStore{dead: []dialect.DeadLetter{{
		ID: 1, Record: outbox.Record{Message: outbox.Message{ID: uuid.New(), Topic: topic, Key: key}, Attempts: 3},
		LastError: "refused \x1b[31mred\u202e", FailedAt: time.Now(),
	}}}
	r := runFake(t, st, "dlq", "list").want(t, 0)
	if strings.ContainsAny(r.stdout, "\x1b\x07\u202e") {
		t.Fatalf("dlq list prints terminal controls: %q", r.stdout)
	}
	r.contains(t, `t\x1b]0;title\x07`, `k\x1b[2J`, `refused \x1b[31mred\u202e`)

	r = runFake(t, st, "dlq", "list", "--json").want(t, 0)
	if strings.ContainsAny(r.stdout, "\x1b\x07") {
		t.Fatalf("dlq list --json prints raw controls: %q", r.stdout)
	}
	var dls []deadLetterJSON
	if err := json.Unmarshal([]byte(r.stdout), &dls); err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Topic != topic || dls[0].Key != key {
		t.Fatalf("--json changed the row data: %+v", dls)
	}
}

// TestDLQUnknownIDs: retry and purge act on the ids that exist and exit 1 naming the others.
func TestDLQUnknownIDs(t *testing.T) {
	t.Parallel()
	for _, verb := range []string{"retry", "purge"} {
		st := &fakeStore{dead: []dialect.DeadLetter{{ID: 3}, {ID: 5}}}
		runFake(t, st, "dlq", verb, "3", "4", "9").want(t, 1).contains(t, "1 dead letter(s)", "no dead letter with id 4 and 9")
		if !slices.Equal(st.moved, []int64{3}) {
			t.Fatalf("dlq %s moved %v, want [3]", verb, st.moved)
		}
		// Only missing ids: nothing moves (not all of them).
		runFake(t, st, "dlq", verb, "4").want(t, 1).contains(t, "0 dead letter(s)", "no dead letter with id 4")
		if len(st.dead) != 1 {
			t.Fatalf("dlq %s of a missing id removed others: %v left", verb, st.dead)
		}
		runFake(t, st, "dlq", verb, "5").want(t, 0)
	}
}

func TestStatusFailingTopicsAndHealth(t *testing.T) {
	t.Parallel()
	st := &fakeStore{stats: dialect.Stats{
		Pending: 9, Ready: 4, Retrying: 5, OldestPending: 10 * time.Minute, DeadLetters: 2,
		BrokerDuplicates: 7,
		Topics: []dialect.TopicErrors{
			{Topic: "orders.created", Failing: 4, LastError: "dial tcp relay:hunter2@k:9092: refused"},
			{Topic: "evil\x1b[2J", Failing: 1, LastError: "x"},
		},
	}}
	r := runFake(t, st, "status").want(t, 0)
	r.matches(t, `(?m)^broker duplicates\s+7$`, `(?m)^failing topics\s+2$`,
		`(?m)^  orders\.created\s+4 failing, last error: dial tcp relay:xxxxx@k:9092: refused$`)
	if strings.Contains(r.stdout, "hunter2") || strings.Contains(r.stdout, "\x1b") {
		t.Fatalf("status prints a secret or a control: %q", r.stdout)
	}

	var s statusJSON
	r = runFake(t, st, "status", "--json").want(t, 0)
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatal(err)
	}
	if !s.Healthy || s.BrokerDuplicates != 7 || len(s.FailingTopics) != 2 || s.FailingTopics[0].Failing != 4 ||
		s.FailingTopics[1].Topic != "evil\x1b[2J" || strings.Contains(s.FailingTopics[0].LastError, "hunter2") {
		t.Fatalf("status --json: %s", r.stdout)
	}

	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--max-dead", "2", "--max-retrying", "5", "--max-age", "11m"}, 0, ""},
		{[]string{"--max-dead", "1"}, exitUnhealthy, "2 dead letters, more than --max-dead 1"},
		{[]string{"--max-dead", "0"}, exitUnhealthy, "more than --max-dead 0"},
		{[]string{"--max-retrying", "4"}, exitUnhealthy, "5 messages retrying, more than --max-retrying 4"},
		{[]string{"--max-age", "5m"}, exitUnhealthy, "older than --max-age 5m0s"},
		{[]string{"--max-dead", "-2"}, exitUsage, "--max-dead"},
	} {
		r := runFake(t, st, append([]string{"status"}, tt.args...)...).want(t, tt.code).contains(t, tt.want)
		if tt.code == exitUnhealthy && !strings.Contains(r.stderr, "unhealthy: ") {
			t.Errorf("%v: stderr %q does not say unhealthy", tt.args, r.stderr)
		}
	}
	r = runFake(t, st, "status", "--json", "--max-dead", "1").want(t, exitUnhealthy)
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatal(err)
	}
	if s.Healthy || len(s.Problems) != 1 {
		t.Fatalf("unhealthy status --json: %s", r.stdout)
	}
}

// TestLoggerRedactsAndCuts: the command's log lines, text and JSON, redact secrets in string
// and error attributes, hide attributes named like a secret and cut long values.
func TestLoggerRedactsAndCuts(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("t", 2000)
	for _, format := range []string{"text", "json"} {
		var buf bytes.Buffer
		logger := newLogger(config.Log{Level: "info", Format: format}, &buf)
		logger.Warn("publish failed: postgres://u:hunter2@db/x",
			slog.String("topic", long),
			slog.Any("error", errors.New("dial tcp relay:hunter2@k:9092: refused")),
			slog.String("dsn", "host=db password=hunter2 user=u"),
			slog.String("password", "hunter2"),
			slog.String("key", "o-1"))
		out := buf.String()
		shown := strings.ReplaceAll(out, strings.Repeat("t", 100), "t…")
		if strings.Contains(out, "hunter2") {
			t.Errorf("%s log shows a secret: %s", format, shown)
		}
		for _, want := range []string{"…(2000 bytes)", "relay:xxxxx@k:9092", "password=xxxxx", "[redacted]", "o-1", "postgres://u:xxxxx@db/…"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s log lacks %q: %s", format, want, shown)
			}
		}
		if strings.Contains(out, strings.Repeat("t", maxLogAttr+1)) {
			t.Errorf("%s log does not cut the topic", format)
		}
	}
}

// TestRedisLogger: go-redis's lines become warnings of the command's logger (JSON lines in
// JSON mode), redacted like the others.
func TestRedisLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := redisLogger{logger: newLogger(config.Log{Level: "info", Format: "json"}, &buf)}
	l.Printf(context.Background(), "redis: %s failed: %v", "redis://:hunter2@h:6379", errors.New("boom"))
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("not a JSON line: %q", buf.String())
	}
	if line["level"] != "WARN" || line["msg"] != "redis client" || strings.Contains(buf.String(), "hunter2") ||
		!strings.Contains(line["detail"].(string), "boom") {
		t.Fatalf("redis log line: %q", buf.String())
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	info := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/outboxgo/outbox", Version: "v1.4.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.time", Value: "2026-12-06T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	if got, want := versionText(info, true), "outbox v1.4.0, revision 0123abcd (modified) of 2026-12-06T10:00:00Z, go1.26.0"; got != want {
		t.Errorf("versionText = %q, want %q", got, want)
	}
	info.Settings, info.Main.Version = nil, ""
	if got, want := versionText(info, true), "outbox (devel), go1.26.0"; got != want {
		t.Errorf("versionText = %q, want %q", got, want)
	}
	own, ok := debug.ReadBuildInfo()
	want := versionText(own, ok) + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if r := (invocation{}).run(t, args...).want(t, 0); r.stdout != want {
			t.Errorf("outbox %v printed %q, want %q", args, r.stdout, want)
		}
	}
}

// TestSecretsNeverPrinted: addresses and URLs with credentials are refused or redacted, in
// the error the command prints, whichever setting holds them.
func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + t.TempDir() + "/x.db"
	for _, tt := range []struct {
		name  string
		env   map[string]string
		field string
	}{
		{"keyword dsn", map[string]string{"OUTBOX_DATABASE_URL": "host=db user=u password=hunter2 dbname=x"}, "database_url"},
		{"keyword dsn quoted", map[string]string{"OUTBOX_DATABASE_URL": "host=db password='hunter2 x'"}, "database_url"},
		{"kafka userinfo", map[string]string{"OUTBOX_DATABASE_URL": db, "OUTBOX_SINK_TYPE": "kafka", "OUTBOX_SINK_KAFKA_BROKERS": "k1:9092,u:hunter2@k2:9092"}, "sink.kafka.brokers"},
		{"kafka scheme", map[string]string{"OUTBOX_DATABASE_URL": db, "OUTBOX_SINK_TYPE": "kafka", "OUTBOX_SINK_KAFKA_BROKERS": "kafka://u:hunter2@k:9092"}, "sink.kafka.brokers"},
		{"redis url", map[string]string{"OUTBOX_DATABASE_URL": db, "OUTBOX_SINK_TYPE": "redis", "OUTBOX_SINK_REDIS_ADDR": "redis://:hunter2@h:6379"}, "sink.redis.addr"},
		{"redis userinfo", map[string]string{"OUTBOX_DATABASE_URL": db, "OUTBOX_SINK_TYPE": "redis", "OUTBOX_SINK_REDIS_ADDR": "u:hunter2@h:6379"}, "sink.redis.addr"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := invocation{env: tt.env}.run(t, "relay").want(t, exitUsage).contains(t, "invalid configuration: "+tt.field+": ")
			if strings.Contains(r.stdout+r.stderr, "hunter2") {
				t.Fatalf("the secret is printed:\n%s", r.stderr)
			}
		})
	}
}

// TestUnknownEnvironmentVariable: an OUTBOX_* variable no setting has is refused like an
// unknown YAML key; the documented non-settings are not.
func TestUnknownEnvironmentVariable(t *testing.T) {
	t.Parallel()
	db := "sqlite:" + t.TempDir() + "/x.db"
	invocation{env: map[string]string{"OUTBOX_DATABASE_URL": db, "OUTBOX_SINK_NATS_URLS": "nats://x:4222"}}.
		run(t, "status").want(t, exitUsage).contains(t, "OUTBOX_SINK_NATS_URLS: unknown environment variable", "did you mean OUTBOX_SINK_NATS_URL?")
	invocation{env: map[string]string{"OUTBOX_DATABASE_URL": db, "OUTBOX_TEST_DATABASE_URL": "x", "OUTBOX_BENCH_SECONDS": "3"}}.
		run(t, "migrate", "up").want(t, 0)
}

// TestLibraryConfigErrorsNameSettings: a library's ConfigError field becomes the YAML path
// of the setting, and the error says how to set it.
func TestLibraryConfigErrorsNameSettings(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ lib, block, field, want string }{
		{"nats", "sink.nats.", "stream.name", "sink.nats.stream"},
		{"nats", "sinks.ev.nats.", "stream.subjects", "sinks.ev.nats.stream_subjects"},
		{"poll", "poll.", "poll_interval", "poll.interval"},
		{"poll", "poll.", "retention", "retention"},
		{"wal", "wal.", "slot_name", "wal.slot"},
		{"relay", "relay.", "max_attempts", "relay.max_attempts"},
		{"kafka", "sink.kafka.", "brokers", "sink.kafka.brokers"},
	} {
		err := config.LibraryError(tt.lib, tt.block, &outbox.ConfigError{Field: tt.field, Reason: "bad"})
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.want {
			t.Errorf("LibraryError(%s, %s, %s) = %v, want field %s", tt.lib, tt.block, tt.field, err, tt.want)
		}
	}
	hint := settingHint(&outbox.ConfigError{Field: "sink.nats.stream"})
	if hint != "Set it with --sink-nats-stream, OUTBOX_SINK_NATS_STREAM or sink.nats.stream in the YAML file." {
		t.Errorf("settingHint = %q", hint)
	}

	// JetStream refusing the stream the relay creates names the setting, not the library's
	// Config field.
	srv := natstest.StartServer(t, nil)
	js, err := jetstream.New(natstest.ConnectURL(t, srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "TAKEN", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	in := sqliteEnv(t)
	in.env["OUTBOX_SINK_NATS_URL"] = srv.URL()
	in.run(t, "migrate", "up").want(t, 0)
	in.run(t, "relay", "--sink-nats-stream", "MINE", "--sink-nats-stream-subjects", "orders.>").want(t, exitUsage).
		contains(t, "invalid configuration: sink.nats.stream: JetStream refused", "Set it with --sink-nats-stream")
}
