// Package config is the configuration of the outbox command: where the outbox table lives, how
// the relay polls and retries, which sink it publishes to, and how it logs.
//
// A Config is built in layers, each overriding the one before: Default, then a YAML file, then
// OUTBOX_* environment variables, then command-line flags. Every setting has one name per layer,
// all derived from its YAML path: poll.batch_size is the env var OUTBOX_POLL_BATCH_SIZE and the
// flag --poll-batch-size. Settings lists them; docs/configuration.md documents them.
//
// Errors name the setting by its YAML path and wrap outbox.ErrInvalidConfig (*outbox.ConfigError).
package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/sqlident"
)

// Config is the whole configuration. The doc tags are the one-line descriptions shown by
// --help and checked against docs/configuration.md.
type Config struct {
	DatabaseURL string        `yaml:"database_url" doc:"database holding the outbox table: postgres://... or sqlite:PATH"`
	Table       string        `yaml:"table" doc:"outbox table, optionally schema-qualified (PostgreSQL)"`
	Retention   time.Duration `yaml:"retention" doc:"keep published rows this long; 0 deletes on publish"`
	Poll        Poll          `yaml:"poll"`
	Relay       Relay         `yaml:"relay"`
	Sink        Sink          `yaml:"sink"`
	Log         Log           `yaml:"log"`
}

// Poll configures the polling source.
type Poll struct {
	Interval  time.Duration `yaml:"interval" doc:"how long an idle worker waits before polling again"`
	BatchSize int           `yaml:"batch_size" doc:"most messages one claim takes"`
	Workers   int           `yaml:"workers" doc:"concurrent claims, each on its own slice of the keys"`
}

// Relay configures retries and shutdown.
type Relay struct {
	MaxAttempts     int           `yaml:"max_attempts" doc:"failed attempts before a message goes to the dead letters"`
	BackoffBase     time.Duration `yaml:"backoff_base" doc:"first retry delay (doubles per attempt, full jitter)"`
	BackoffMax      time.Duration `yaml:"backoff_max" doc:"longest retry delay"`
	PublishTimeout  time.Duration `yaml:"publish_timeout" doc:"bound on one publish call to the sink"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" doc:"how long in-flight batches may finish after a stop signal"`
	ID              string        `yaml:"id" doc:"name of this relay among the live relays; empty: host-pid-random"`
}

// Sink selects and configures the broker.
type Sink struct {
	Type string `yaml:"type" doc:"where messages go: nats or stdout"`
	NATS NATS   `yaml:"nats"`
}

// NATS configures the NATS JetStream sink.
type NATS struct {
	URL            string   `yaml:"url" doc:"NATS server URL(s), comma-separated"`
	SubjectPrefix  string   `yaml:"subject_prefix" doc:"put before every topic: subject = prefix + topic"`
	Source         string   `yaml:"source" doc:"CloudEvents source attribute (the producing service)"`
	Stream         string   `yaml:"stream" doc:"when set, create or update this JetStream stream at start"`
	StreamSubjects []string `yaml:"stream_subjects" doc:"subjects of that stream, comma-separated; default subject_prefix + \">\""`
}

// Log configures the relay's logs (written to stderr).
type Log struct {
	Level  string `yaml:"level" doc:"debug, info, warn or error"`
	Format string `yaml:"format" doc:"text or json"`
}

// Defaults.
const (
	DefaultTable           = outbox.DefaultTable
	DefaultPollInterval    = 100 * time.Millisecond
	DefaultBatchSize       = 1000
	DefaultWorkers         = 2
	DefaultMaxAttempts     = 25
	DefaultBackoffBase     = time.Second
	DefaultBackoffMax      = 5 * time.Minute
	DefaultPublishTimeout  = 30 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	DefaultSinkType        = "nats"
	DefaultNATSURL         = "nats://127.0.0.1:4222"
	DefaultSource          = "outbox"
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "text"
)

// Default returns the configuration used when nothing is set. It is valid except for
// DatabaseURL, which has no default.
func Default() Config {
	return Config{
		Table: DefaultTable,
		Poll: Poll{
			Interval:  DefaultPollInterval,
			BatchSize: DefaultBatchSize,
			Workers:   DefaultWorkers,
		},
		Relay: Relay{
			MaxAttempts:     DefaultMaxAttempts,
			BackoffBase:     DefaultBackoffBase,
			BackoffMax:      DefaultBackoffMax,
			PublishTimeout:  DefaultPublishTimeout,
			ShutdownTimeout: DefaultShutdownTimeout,
		},
		Sink: Sink{
			Type: DefaultSinkType,
			NATS: NATS{URL: DefaultNATSURL, Source: DefaultSource},
		},
		Log: Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}

// Database is a parsed database_url.
type Database struct {
	Dialect outbox.Dialect
	// URL is the PostgreSQL connection string (Postgres only).
	URL string
	// Path is the SQLite database file (SQLite only).
	Path string
}

// ParseDatabaseURL splits a database_url into its dialect and address. Accepted forms:
//
//	postgres://user:pass@host:5432/db?sslmode=disable   (also postgresql://)
//	sqlite:relative/path.db
//	sqlite:///absolute/path.db
//	sqlite://relative/path.db
func ParseDatabaseURL(s string) (Database, error) {
	switch {
	case s == "":
		return Database{}, fmt.Errorf("required: postgres://... or sqlite:PATH")
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		if _, err := pgconn.ParseConfig(s); err != nil {
			return Database{}, err
		}
		return Database{Dialect: outbox.Postgres, URL: s}, nil
	case strings.HasPrefix(s, "sqlite:"):
		path := strings.TrimPrefix(s, "sqlite:")
		// sqlite:///abs → /abs and sqlite://rel → rel, as in the usual URL spellings.
		path = strings.TrimPrefix(path, "//")
		if path == "" {
			return Database{}, fmt.Errorf("sqlite needs a file path, e.g. sqlite:outbox.db or sqlite:///var/lib/app/outbox.db")
		}
		if strings.ContainsAny(path, "?#\x00") {
			return Database{}, fmt.Errorf("sqlite path %q: query parameters and fragments are not supported", path)
		}
		return Database{Dialect: outbox.SQLite, Path: path}, nil
	default:
		return Database{}, fmt.Errorf("%s: must start with postgres://, postgresql:// or sqlite:", redact(s))
	}
}

// redact hides a password in something that looks like a URL, for error messages.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		if len(s) > 40 {
			return fmt.Sprintf("%q", s[:40]+"…")
		}
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q", u.Redacted())
}

// Database returns the parsed DatabaseURL. Call it after Validate.
func (c *Config) Database() (Database, error) {
	db, err := ParseDatabaseURL(c.DatabaseURL)
	if err != nil {
		return Database{}, &outbox.ConfigError{Field: "database_url", Reason: err.Error()}
	}
	return db, nil
}

// EffectiveStreamSubjects returns the subjects of the configured stream:
// sink.nats.stream_subjects, or subject_prefix + ">" when that is empty and the prefix ends
// with a dot.
func (n *NATS) EffectiveStreamSubjects() []string {
	if len(n.StreamSubjects) > 0 {
		return n.StreamSubjects
	}
	if strings.HasSuffix(n.SubjectPrefix, ".") {
		return []string{n.SubjectPrefix + ">"}
	}
	return nil
}

func invalid(field, format string, args ...any) error {
	return &outbox.ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate checks every setting and returns the first problem as a *outbox.ConfigError naming
// the setting by its YAML path.
func (c *Config) Validate() error {
	db, err := ParseDatabaseURL(c.DatabaseURL)
	if err != nil {
		return invalid("database_url", "%s", err)
	}
	t, err := sqlident.Parse(c.Table)
	if err != nil {
		reason := strings.TrimPrefix(err.Error(), sqlident.ErrInvalid.Error()+": ")
		return invalid("table", "%s", strings.TrimPrefix(reason, "table "))
	}
	if db.Dialect == outbox.SQLite && t.Schema != "" {
		return invalid("table", "%q: SQLite tables cannot be schema-qualified", c.Table)
	}
	if c.Retention < 0 {
		return invalid("retention", "must not be negative")
	}

	switch p := &c.Poll; {
	case p.Interval < time.Millisecond || p.Interval > time.Hour:
		return invalid("poll.interval", "must be between 1ms and 1h")
	case p.BatchSize < 1 || p.BatchSize > 100000:
		return invalid("poll.batch_size", "must be between 1 and 100000")
	case p.Workers < 1 || p.Workers > 256:
		return invalid("poll.workers", "must be between 1 and 256")
	}

	switch r := &c.Relay; {
	case r.MaxAttempts < 1 || r.MaxAttempts > 1000000:
		return invalid("relay.max_attempts", "must be between 1 and 1000000")
	case r.BackoffBase <= 0:
		return invalid("relay.backoff_base", "must be positive")
	case r.BackoffMax < r.BackoffBase:
		return invalid("relay.backoff_max", "must be at least relay.backoff_base (%s)", r.BackoffBase)
	case r.PublishTimeout <= 0:
		return invalid("relay.publish_timeout", "must be positive")
	case r.ShutdownTimeout <= 0:
		return invalid("relay.shutdown_timeout", "must be positive")
	case len(r.ID) > 200:
		return invalid("relay.id", "longer than 200 bytes")
	case hasControl(r.ID):
		return invalid("relay.id", "contains a control character")
	}

	switch c.Sink.Type {
	case "nats", "stdout":
	default:
		return invalid("sink.type", "%q is not one of nats, stdout", c.Sink.Type)
	}
	if err := c.Sink.NATS.validate(c.Sink.Type == "nats"); err != nil {
		return err
	}

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return invalid("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return invalid("log.format", "%q is not one of text, json", c.Log.Format)
	}
	return nil
}

func (n *NATS) validate(used bool) error {
	if used && strings.TrimSpace(n.URL) == "" {
		return invalid("sink.nats.url", "required when sink.type is nats")
	}
	if n.URL != "" {
		for _, u := range strings.Split(n.URL, ",") {
			if reason := checkNATSURL(strings.TrimSpace(u)); reason != "" {
				return invalid("sink.nats.url", "%s", reason)
			}
		}
	}
	if n.SubjectPrefix != "" {
		// A prefix is valid when some topic can follow it.
		if reason := checkSubject(n.SubjectPrefix+"x", false); reason != "" {
			return invalid("sink.nats.subject_prefix", "%q %s", n.SubjectPrefix, reason)
		}
	}
	if n.Source == "" {
		return invalid("sink.nats.source", "must not be empty")
	}
	if hasControl(n.Source) {
		return invalid("sink.nats.source", "contains a control character")
	}
	if n.Stream == "" {
		if len(n.StreamSubjects) > 0 {
			return invalid("sink.nats.stream_subjects", "set without sink.nats.stream")
		}
		return nil
	}
	if reason := checkStreamName(n.Stream); reason != "" {
		return invalid("sink.nats.stream", "%q %s", n.Stream, reason)
	}
	for _, s := range n.StreamSubjects {
		if reason := checkSubject(s, true); reason != "" {
			return invalid("sink.nats.stream_subjects", "%q %s", s, reason)
		}
	}
	if len(n.EffectiveStreamSubjects()) == 0 {
		return invalid("sink.nats.stream_subjects", "required when sink.nats.stream is set and sink.nats.subject_prefix does not end with \".\"")
	}
	return nil
}

func checkNATSURL(s string) string {
	if s == "" {
		return "empty server address in the list"
	}
	raw := s
	if !strings.Contains(s, "://") {
		raw = "nats://" + s // as the NATS client does
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Sprintf("%s: %v", redact(s), err)
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
	default:
		return fmt.Sprintf("%s: scheme must be nats, tls, ws or wss", redact(s))
	}
	if u.Hostname() == "" {
		return fmt.Sprintf("%s: no host", redact(s))
	}
	return ""
}

// checkSubject follows the NATS server's rules: dot-separated non-empty tokens without
// whitespace or control characters; wildcard tokens (* and a final >) only when allowed.
func checkSubject(s string, wildcards bool) string {
	if len(s) > 3840 {
		return "is longer than 3840 bytes"
	}
	tokens := strings.Split(s, ".")
	for i, tok := range tokens {
		switch {
		case tok == "":
			return "has an empty token (leading, trailing or double dot)"
		case strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }):
			return "contains whitespace or a control character"
		case tok == "*" || tok == ">":
			if !wildcards {
				return "contains a wildcard token (* or >)"
			}
			if tok == ">" && i != len(tokens)-1 {
				return "has > before the last token"
			}
		}
	}
	return ""
}

// checkStreamName follows JetStream's rules for stream names.
func checkStreamName(s string) string {
	if len(s) > 255 {
		return "is longer than 255 bytes"
	}
	if strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune(".*>/\\", r)
	}) {
		return "must not contain whitespace, control characters, '.', '*', '>', '/' or '\\'"
	}
	return ""
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
