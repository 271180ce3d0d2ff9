package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
)

const pgURL = "postgres://u@127.0.0.1:5432/db?sslmode=disable"

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "outbox.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantConfigError checks that err is a *outbox.ConfigError for field whose reason contains
// every fragment.
func wantConfigError(t *testing.T, err error, field string, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one for %s", field)
	}
	if !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Fatalf("error %q does not wrap ErrInvalidConfig", err)
	}
	var ce *outbox.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %q is not a *ConfigError", err)
	}
	if ce.Field != field {
		t.Fatalf("error %q names field %q, want %q", err, ce.Field, field)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not contain %q", err, f)
		}
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := Load(LoadOptions{Getenv: env("OUTBOX_DATABASE_URL", pgURL)})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.DatabaseURL = pgURL
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("got %+v\nwant %+v", cfg, want)
	}
	if cfg.Table != "outbox" || cfg.Poll.Interval != 100*time.Millisecond || cfg.Poll.BatchSize != 1000 ||
		cfg.Poll.Workers != 2 || cfg.Relay.MaxAttempts != 25 || cfg.Relay.BackoffBase != time.Second ||
		cfg.Relay.BackoffMax != 5*time.Minute || cfg.Relay.PublishTimeout != 30*time.Second ||
		cfg.Relay.ShutdownTimeout != 10*time.Second || cfg.Sink.Type != "nats" ||
		cfg.Poll.MaxBatchBytes != 16<<20 || !cfg.Poll.Notify || cfg.Relay.BatchTimeout != time.Minute ||
		cfg.Topics != nil || cfg.Sinks != nil || cfg.Routes != nil ||
		cfg.Sink.NATS.URL != "nats://127.0.0.1:4222" || cfg.Sink.NATS.Source != "outbox" ||
		cfg.Log.Level != "info" || cfg.Log.Format != "text" || cfg.Retention != 0 {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
}

func TestSettingNames(t *testing.T) {
	t.Parallel()
	s, ok := Lookup("sink.nats.url")
	if !ok || s.Env != "OUTBOX_SINK_NATS_URL" || s.Flag != "sink-nats-url" || s.Kind != KindString || s.Default != DefaultNATSURL {
		t.Fatalf("sink.nats.url: %+v", s)
	}
	s, ok = Lookup("poll.interval")
	if !ok || s.Env != "OUTBOX_POLL_INTERVAL" || s.Flag != "poll-interval" || s.Kind != KindDuration || s.Default != "100ms" {
		t.Fatalf("poll.interval: %+v", s)
	}
	for _, s := range Settings() {
		if s.Doc == "" {
			t.Errorf("%s has no doc tag", s.Path)
		}
	}
}

func TestPrecedence(t *testing.T) {
	t.Parallel()
	file := `
database_url: sqlite:file.db
table: from_file
poll:
  interval: 1s
  batch_size: 10
  workers: 3
sink:
  nats:
    url: nats://file:4222
    stream_subjects: [a.>, b.>]
    stream: S
`
	tests := []struct {
		name  string
		file  bool
		env   []string
		flags map[string]string
		path  string
		want  string
	}{
		{name: "default", path: "poll.batch_size", want: "1000"},
		{name: "file over default", file: true, path: "poll.batch_size", want: "10"},
		{name: "env over default", env: []string{"OUTBOX_POLL_BATCH_SIZE", "20"}, path: "poll.batch_size", want: "20"},
		{name: "env over file", file: true, env: []string{"OUTBOX_POLL_BATCH_SIZE", "20"}, path: "poll.batch_size", want: "20"},
		{name: "flag over env", file: true, env: []string{"OUTBOX_POLL_BATCH_SIZE", "20"},
			flags: map[string]string{"poll.batch_size": "30"}, path: "poll.batch_size", want: "30"},
		{name: "flag over default", flags: map[string]string{"poll.workers": "7"}, path: "poll.workers", want: "7"},
		{name: "empty env is unset", file: true, env: []string{"OUTBOX_TABLE", ""}, path: "table", want: "from_file"},
		{name: "duration from env", file: true, env: []string{"OUTBOX_POLL_INTERVAL", "250ms"}, path: "poll.interval", want: "250ms"},
		{name: "duration from file", file: true, path: "poll.interval", want: "1s"},
		{name: "nested env", env: []string{"OUTBOX_SINK_NATS_URL", "nats://env:4222"}, file: true, path: "sink.nats.url", want: "nats://env:4222"},
		{name: "list from file", file: true, path: "sink.nats.stream_subjects", want: "a.>,b.>"},
		{name: "list from env", file: true, env: []string{"OUTBOX_SINK_NATS_STREAM_SUBJECTS", "x.>, y.>"}, path: "sink.nats.stream_subjects", want: "x.>,y.>"},
		{name: "database from flag", file: true, env: []string{"OUTBOX_DATABASE_URL", "sqlite:env.db"},
			flags: map[string]string{"database_url": "sqlite:flag.db"}, path: "database_url", want: "sqlite:flag.db"},
		{name: "untouched keeps file", file: true, flags: map[string]string{"poll.workers": "5"}, path: "poll.batch_size", want: "10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			kv := append([]string{}, tt.env...)
			opts := LoadOptions{Flags: tt.flags}
			if tt.file {
				opts.File = writeFile(t, file)
			} else if !slicesContains(kv, "OUTBOX_DATABASE_URL") {
				kv = append(kv, "OUTBOX_DATABASE_URL", pgURL)
			}
			opts.Getenv = env(kv...)
			cfg, err := Load(opts)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := cfg.Get(tt.path); got != tt.want {
				t.Fatalf("%s = %q, want %q", tt.path, got, tt.want)
			}
		})
	}
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestConfigFileFromEnv(t *testing.T) {
	t.Parallel()
	p := writeFile(t, "database_url: sqlite:x.db\ntable: via_env_file\n")
	cfg, err := Load(LoadOptions{Getenv: env(EnvConfigFile, p)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Table != "via_env_file" {
		t.Fatalf("table = %q", cfg.Table)
	}
	// --config wins over OUTBOX_CONFIG.
	p2 := writeFile(t, "database_url: sqlite:x.db\ntable: via_flag_file\n")
	cfg, err = Load(LoadOptions{File: p2, Getenv: env(EnvConfigFile, p)})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Table != "via_flag_file" {
		t.Fatalf("table = %q", cfg.Table)
	}
	_, err = Load(LoadOptions{File: filepath.Join(t.TempDir(), "missing.yaml"), Getenv: env()})
	wantConfigError(t, err, "config file", "missing.yaml")
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		edit   func(c *Config)
		field  string // "" means valid
		reason string
	}{
		{name: "valid postgres", edit: func(*Config) {}},
		{name: "valid postgresql scheme", edit: func(c *Config) { c.DatabaseURL = "postgresql://h/db" }},
		{name: "valid sqlite relative", edit: func(c *Config) { c.DatabaseURL = "sqlite:data/outbox.db" }},
		{name: "valid sqlite absolute", edit: func(c *Config) { c.DatabaseURL = "sqlite:///var/lib/outbox.db" }},
		{name: "valid schema table", edit: func(c *Config) { c.Table = "app.outbox" }},
		{name: "valid stdout sink", edit: func(c *Config) { c.Sink.Type = "stdout"; c.Sink.NATS.URL = "" }},
		{name: "valid stream from prefix", edit: func(c *Config) { c.Sink.NATS.Stream = "EVENTS"; c.Sink.NATS.SubjectPrefix = "app." }},
		{name: "valid retention", edit: func(c *Config) { c.Retention = time.Hour }},
		{name: "valid mysql", edit: func(c *Config) { c.DatabaseURL = "mysql://root@127.0.0.1:3306/test" }},
		{name: "valid mysql qualified table", edit: func(c *Config) { c.DatabaseURL = "mysql://root@127.0.0.1/test"; c.Table = "shop.outbox" }},
		{name: "valid mariadb binlog", edit: func(c *Config) { c.DatabaseURL = "mariadb://root@127.0.0.1/test"; c.Source = "binlog" }},
		{name: "valid wal logical", edit: func(c *Config) { c.Source = "wal"; c.WAL.Mode = "logical"; c.WAL.Slot = "orders_1" }},
		{name: "valid several nats urls", edit: func(c *Config) { c.Sink.NATS.URL = "nats://a:4222, tls://b:4222,c:4222" }},

		{name: "database missing", edit: func(c *Config) { c.DatabaseURL = "" }, field: "database_url", reason: "required"},
		{name: "database scheme", edit: func(c *Config) { c.DatabaseURL = "oracle://u:secret@h/db" }, field: "database_url", reason: "must start with"},
		{name: "database password redacted", edit: func(c *Config) { c.DatabaseURL = "oracle://u:secret@h/db" }, field: "database_url", reason: "xxxxx"},
		{name: "mysql bad url password hidden", edit: func(c *Config) { c.DatabaseURL = "mysql://u:secret@h:notaport/db" }, field: "database_url", reason: "port"},
		{name: "wal message prefix", edit: func(c *Config) { c.WAL.MessagePrefix = "" }, field: "wal.message_prefix"},
		{name: "member ttl", edit: func(c *Config) { c.Poll.MemberTTL = time.Millisecond }, field: "poll.member_ttl", reason: "between 1s and 1h"},
		{name: "source unknown", edit: func(c *Config) { c.Source = "cdc" }, field: "source", reason: "poll, wal, binlog"},
		{name: "wal on sqlite", edit: func(c *Config) { c.DatabaseURL = "sqlite:x.db"; c.Source = "wal" }, field: "source", reason: "postgres://"},
		{name: "binlog on postgres", edit: func(c *Config) { c.Source = "binlog" }, field: "source", reason: "mysql://"},
		{name: "wal with topics", edit: func(c *Config) { c.Source = "wal"; c.Topics = []string{"a"} }, field: "topics", reason: "source poll"},
		{name: "wal slot upper case", edit: func(c *Config) { c.Source = "wal"; c.WAL.Slot = "Outbox" }, field: "wal.slot", reason: "lowercase"},
		{name: "wal slot too long", edit: func(c *Config) { c.WAL.Slot = strings.Repeat("s", 64) }, field: "wal.slot"},
		{name: "wal mode", edit: func(c *Config) { c.WAL.Mode = "rows" }, field: "wal.mode", reason: "table, logical"},
		{name: "wal publication", edit: func(c *Config) { c.WAL.Publication = "a;drop" }, field: "wal.publication"},
		{name: "wal workers", edit: func(c *Config) { c.WAL.Workers = 0 }, field: "wal.workers"},
		{name: "wal in flight below batch", edit: func(c *Config) { c.WAL.MaxInFlight = 10 }, field: "wal.max_in_flight", reason: "wal.batch_size"},
		{name: "binlog batch size", edit: func(c *Config) { c.Binlog.BatchSize = 0 }, field: "binlog.batch_size"},
		{name: "binlog server id", edit: func(c *Config) { c.Binlog.ServerID = -1 }, field: "binlog.server_id"},
		{name: "binlog name control", edit: func(c *Config) { c.Binlog.Name = "a\nb" }, field: "binlog.name", reason: "control"},
		{name: "database bad postgres", edit: func(c *Config) { c.DatabaseURL = "postgres://h:notaport/db" }, field: "database_url"},
		{name: "sqlite no path", edit: func(c *Config) { c.DatabaseURL = "sqlite:" }, field: "database_url", reason: "file path"},
		{name: "sqlite query", edit: func(c *Config) { c.DatabaseURL = "sqlite:x.db?mode=ro" }, field: "database_url", reason: "query"},
		{name: "table bad name", edit: func(c *Config) { c.Table = "bad name" }, field: "table", reason: "not allowed"},
		{name: "table empty", edit: func(c *Config) { c.Table = "" }, field: "table", reason: "empty"},
		{name: "table sqlite schema", edit: func(c *Config) { c.DatabaseURL = "sqlite:x.db"; c.Table = "app.outbox" }, field: "table", reason: "SQLite"},
		{name: "retention negative", edit: func(c *Config) { c.Retention = -time.Second }, field: "retention", reason: "negative"},
		{name: "poll interval zero", edit: func(c *Config) { c.Poll.Interval = 0 }, field: "poll.interval", reason: "between 1ms and 1h"},
		{name: "poll interval huge", edit: func(c *Config) { c.Poll.Interval = 2 * time.Hour }, field: "poll.interval"},
		{name: "batch size negative", edit: func(c *Config) { c.Poll.BatchSize = -5 }, field: "poll.batch_size", reason: "must be between 1 and 100000"},
		{name: "batch size huge", edit: func(c *Config) { c.Poll.BatchSize = 100001 }, field: "poll.batch_size"},
		{name: "workers zero", edit: func(c *Config) { c.Poll.Workers = 0 }, field: "poll.workers", reason: "between 1 and 256"},
		{name: "workers huge", edit: func(c *Config) { c.Poll.Workers = 257 }, field: "poll.workers"},
		{name: "max attempts zero", edit: func(c *Config) { c.Relay.MaxAttempts = 0 }, field: "relay.max_attempts"},
		{name: "backoff base zero", edit: func(c *Config) { c.Relay.BackoffBase = 0 }, field: "relay.backoff_base", reason: "positive"},
		{name: "backoff max below base", edit: func(c *Config) { c.Relay.BackoffMax = time.Millisecond }, field: "relay.backoff_max", reason: "relay.backoff_base"},
		{name: "publish timeout zero", edit: func(c *Config) { c.Relay.PublishTimeout = 0 }, field: "relay.publish_timeout"},
		{name: "shutdown timeout negative", edit: func(c *Config) { c.Relay.ShutdownTimeout = -1 }, field: "relay.shutdown_timeout"},
		{name: "relay id control", edit: func(c *Config) { c.Relay.ID = "a\nb" }, field: "relay.id", reason: "control"},
		{name: "relay id long", edit: func(c *Config) { c.Relay.ID = strings.Repeat("x", 201) }, field: "relay.id"},
		{name: "sink type", edit: func(c *Config) { c.Sink.Type = "rabbit" }, field: "sink.type", reason: "nats, stdout, kafka, amqp, mqtt, redis, webhook"},
		{name: "nats url missing", edit: func(c *Config) { c.Sink.NATS.URL = "" }, field: "sink.nats.url", reason: "required"},
		{name: "nats url scheme", edit: func(c *Config) { c.Sink.NATS.URL = "http://h:4222" }, field: "sink.nats.url", reason: "scheme"},
		{name: "nats url empty item", edit: func(c *Config) { c.Sink.NATS.URL = "nats://a:1,," }, field: "sink.nats.url", reason: "empty"},
		{name: "nats url no host", edit: func(c *Config) { c.Sink.NATS.URL = "nats://:4222" }, field: "sink.nats.url", reason: "no host"},
		{name: "subject prefix wildcard", edit: func(c *Config) { c.Sink.NATS.SubjectPrefix = "a.*." }, field: "sink.nats.subject_prefix", reason: "wildcard"},
		{name: "subject prefix space", edit: func(c *Config) { c.Sink.NATS.SubjectPrefix = "a b." }, field: "sink.nats.subject_prefix", reason: "whitespace"},
		{name: "subject prefix double dot", edit: func(c *Config) { c.Sink.NATS.SubjectPrefix = "a.." }, field: "sink.nats.subject_prefix", reason: "empty token"},
		{name: "source empty", edit: func(c *Config) { c.Sink.NATS.Source = "" }, field: "sink.nats.source"},
		{name: "source control", edit: func(c *Config) { c.Sink.NATS.Source = "a\x01" }, field: "sink.nats.source"},
		{name: "stream name", edit: func(c *Config) { c.Sink.NATS.Stream = "a.b"; c.Sink.NATS.StreamSubjects = []string{"x.>"} }, field: "sink.nats.stream"},
		{name: "stream subjects without stream", edit: func(c *Config) { c.Sink.NATS.StreamSubjects = []string{"x.>"} }, field: "sink.nats.stream_subjects", reason: "without"},
		{name: "stream subjects bad", edit: func(c *Config) { c.Sink.NATS.Stream = "S"; c.Sink.NATS.StreamSubjects = []string{"x.>.y"} }, field: "sink.nats.stream_subjects"},
		{name: "stream subjects needed", edit: func(c *Config) { c.Sink.NATS.Stream = "S"; c.Sink.NATS.SubjectPrefix = "app" }, field: "sink.nats.stream_subjects", reason: "required"},
		{name: "log level", edit: func(c *Config) { c.Log.Level = "verbose" }, field: "log.level"},
		{name: "log format", edit: func(c *Config) { c.Log.Format = "xml" }, field: "log.format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			c.DatabaseURL = pgURL
			tt.edit(&c)
			err := c.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			if tt.reason != "" {
				wantConfigError(t, err, tt.field, tt.field+": ", tt.reason)
			} else {
				wantConfigError(t, err, tt.field, tt.field+": ")
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		yaml   string
		env    []string
		flags  map[string]string
		field  string
		reason string
	}{
		{name: "unknown top key", yaml: "databse_url: x\n", field: "databse_url", reason: "unknown key (line 1)"},
		{name: "unknown nested key", yaml: "poll:\n  interval: 1s\n  batchsize: 3\n", field: "poll.batchsize", reason: "line 3"},
		{name: "suggestion", yaml: "poll:\n  batch-size: 3\n", field: "poll.batch-size", reason: "did you mean poll.batch_size"},
		{name: "unknown deep key", yaml: "sink:\n  nats:\n    urls: x\n", field: "sink.nats.urls", reason: "unknown key"},
		{name: "duplicate key", yaml: "table: a\ntable: b\n", field: "table", reason: "duplicate"},
		{name: "not an int", yaml: "poll:\n  batch_size: many\n", field: "poll.batch_size", reason: "not an integer"},
		{name: "duration without unit", yaml: "poll:\n  interval: 100\n", field: "poll.interval", reason: "not a duration"},
		{name: "struct given scalar", yaml: "poll: 5\n", field: "poll", reason: "mapping"},
		{name: "scalar given mapping", yaml: "table:\n  a: b\n", field: "table", reason: "single value"},
		{name: "list given mapping", yaml: "sink:\n  nats:\n    stream_subjects: {a: b}\n", field: "sink.nats.stream_subjects", reason: "list"},
		{name: "list of lists", yaml: "sink:\n  nats:\n    stream_subjects: [[a]]\n", field: "sink.nats.stream_subjects", reason: "strings"},
		{name: "top level list", yaml: "- a\n- b\n", field: "config file", reason: "mapping"},
		{name: "syntax error", yaml: "poll: [\n", field: "config file"},
		{name: "two documents", yaml: "table: a\n---\ntable: b\n", field: "config file", reason: "more than one"},
		{name: "env not int", env: []string{"OUTBOX_POLL_BATCH_SIZE", "x"}, field: "poll.batch_size", reason: "OUTBOX_POLL_BATCH_SIZE"},
		{name: "env negative", env: []string{"OUTBOX_POLL_BATCH_SIZE", "-5"}, field: "poll.batch_size", reason: "between 1 and 100000 (from OUTBOX_POLL_BATCH_SIZE)"},
		{name: "yaml out of range", yaml: "poll:\n  workers: 300\n", field: "poll.workers", reason: "outbox.yaml)"},
		{name: "flag out of range", flags: map[string]string{"relay.max_attempts": "0"}, field: "relay.max_attempts", reason: "(from --relay-max-attempts)"},
		{name: "env bad duration", env: []string{"OUTBOX_RELAY_BACKOFF_MAX", "5 minutes"}, field: "relay.backoff_max", reason: "OUTBOX_RELAY_BACKOFF_MAX"},
		{name: "flag bad duration", flags: map[string]string{"poll.interval": "soon"}, field: "poll.interval", reason: "--poll-interval"},
		{name: "flag unknown", flags: map[string]string{"nope": "1"}, field: "nope", reason: "unknown setting"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			opts := LoadOptions{Getenv: env(append([]string{"OUTBOX_DATABASE_URL", pgURL}, tt.env...)...), Flags: tt.flags}
			if tt.yaml != "" {
				opts.File = writeFile(t, tt.yaml)
			}
			_, err := Load(opts)
			wantConfigError(t, err, tt.field, tt.reason)
		})
	}
}

func TestYAMLForms(t *testing.T) {
	t.Parallel()
	c := Default()
	err := c.ApplyYAML([]byte(`
# anchors, nulls and comments are fine
defaults: &d 2
`))
	wantConfigError(t, err, "defaults", "unknown key")

	c = Default()
	if err := c.ApplyYAML([]byte("table:\npoll:\n  workers: 4\nsink:\n  nats:\n    stream_subjects: a.>, b.>\n")); err != nil {
		t.Fatal(err)
	}
	if c.Table != DefaultTable || c.Poll.Workers != 4 || !reflect.DeepEqual(c.Sink.NATS.StreamSubjects, []string{"a.>", "b.>"}) {
		t.Fatalf("got %+v", c)
	}
	for _, empty := range []string{"", "\n", "# nothing\n", "~\n", "---\n"} {
		c := Default()
		if err := c.ApplyYAML([]byte(empty)); err != nil {
			t.Errorf("%q: %v", empty, err)
		}
	}
	c = Default()
	if err := c.ApplyYAML([]byte("poll:\n  workers: &w 3\nrelay:\n  max_attempts: *w\n")); err != nil {
		t.Fatal(err)
	}
	if c.Relay.MaxAttempts != 3 {
		t.Fatalf("alias: max_attempts = %d", c.Relay.MaxAttempts)
	}
}

func TestParseDatabaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Database
	}{
		{"postgres://h/db", Database{Dialect: outbox.Postgres, URL: "postgres://h/db"}},
		{"postgresql://h/db", Database{Dialect: outbox.Postgres, URL: "postgresql://h/db"}},
		{"sqlite:outbox.db", Database{Dialect: outbox.SQLite, Path: "outbox.db"}},
		{"sqlite:///var/lib/outbox.db", Database{Dialect: outbox.SQLite, Path: "/var/lib/outbox.db"}},
		{"sqlite://data/outbox.db", Database{Dialect: outbox.SQLite, Path: "data/outbox.db"}},
		{"sqlite:/tmp/x.db", Database{Dialect: outbox.SQLite, Path: "/tmp/x.db"}},
	}
	for _, tt := range tests {
		got, err := ParseDatabaseURL(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseDatabaseURL(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzApplyYAML(f *testing.F) {
	f.Add([]byte("database_url: sqlite:x.db\npoll:\n  interval: 250ms\n"))
	f.Add([]byte("sink:\n  nats:\n    stream_subjects: [a.>, b.>]\n    stream: S\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("poll: &p {workers: 1}\nrelay: *p\n"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("? [a]\n: b\n"))
	f.Add([]byte("poll:\n  batch_size: 99999999999999999999999\n"))
	f.Add([]byte("retention: -9223372036854775808ns\n"))
	f.Add([]byte(routedYAML))
	f.Add([]byte("sinks: {a: {type: webhook, webhook: {urls: {x: y}, headers: {A: b}, secrets: [s]}}}\nroutes: [{topic: '>', sink: a}]\n"))
	f.Add([]byte("routes: [{topic: &t a, sink: *t}, ~, []]\nsink: {amqp: {declare_exchange: {kind: topic}}, redis: {approximate: yes}}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		err := c.ApplyYAML(data)
		if err != nil && !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Fatalf("error %q does not wrap ErrInvalidConfig", err)
		}
		_ = c.Validate()
	})
}

// TestDocsCoverEverySetting keeps docs/configuration.md in step with the settings.
func TestDocsCoverEverySetting(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	for _, s := range Settings() {
		row := fmt.Sprintf("| `%s` | `%s` | `--%s` | %s |", s.Path, s.Env, s.Flag, s.Kind)
		if s.YAMLOnly() {
			row = fmt.Sprintf("| `%s` | — | — | %s |", s.Path, s.Kind)
		}
		if !strings.Contains(doc, row) {
			t.Errorf("docs/configuration.md: no table row starting %s", row)
		}
		if s.Default != "" && !strings.Contains(doc, row+" `"+s.Default+"` |") {
			t.Errorf("docs/configuration.md: %s default is not `%s`", s.Path, s.Default)
		}
		if !strings.Contains(doc, "`"+s.Path+"`\n") && !strings.Contains(doc, "`"+s.Path+"`, ") {
			t.Errorf("docs/configuration.md: no section for %s", s.Path)
		}
	}
}
