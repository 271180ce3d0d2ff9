// Package config is the configuration of the outbox command: where the outbox table lives, how
// the relay polls and retries, which sinks it publishes to (and, with routes, which topics go
// to which), and how it logs.
//
// A Config is built in layers, each overriding the one before: Default, then a YAML file, then
// OUTBOX_* environment variables, then command-line flags. Every setting has one name per layer,
// all derived from its YAML path: poll.batch_size is the env var OUTBOX_POLL_BATCH_SIZE and the
// flag --poll-batch-size. Maps, the named sinks and the routes are set in the YAML file only.
// Settings lists them all; docs/configuration.md documents them.
//
// Errors name the setting by its YAML path and wrap outbox.ErrInvalidConfig (*outbox.ConfigError).
// Credentials are typed Secret or URL, which print redacted, and no error quotes them.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/internal/sqlident"
)

// Config is the whole configuration. The doc tags are the one-line descriptions shown by
// --help and checked against docs/configuration.md.
//
// Values that may hold credentials have the types Secret and URL, which print redacted: a
// Config can be logged or dumped with fmt without leaking them.
type Config struct {
	DatabaseURL URL           `yaml:"database_url" doc:"database holding the outbox table: postgres://..., mysql://... or sqlite:PATH"`
	Table       string        `yaml:"table" doc:"outbox table, optionally schema-qualified (PostgreSQL) or database-qualified (MySQL)"`
	Source      string        `yaml:"source" doc:"how the relay finds messages: poll (the table), wal (PostgreSQL logical replication) or binlog (MariaDB binlog)"`
	Retention   time.Duration `yaml:"retention" doc:"keep published rows this long; 0 deletes on publish"`
	Topics      []string      `yaml:"topics" doc:"publish only messages of these exact topics, comma-separated; empty: all"`
	Poll        Poll          `yaml:"poll"`
	WAL         WAL           `yaml:"wal"`
	Binlog      Binlog        `yaml:"binlog"`
	Relay       Relay         `yaml:"relay"`
	Sink        Sink          `yaml:"sink"`
	// Sinks are the named sinks that Routes send topics to.
	Sinks map[string]Sink `yaml:"sinks" doc:"named sinks for routes: name → a block like sink (YAML only)"`
	// Routes, when set, send each topic to the sink of the first route whose pattern matches.
	Routes  []Route `yaml:"routes" doc:"topic patterns → sink names, first match wins (YAML only)"`
	Log     Log     `yaml:"log"`
	Admin   Admin   `yaml:"admin"`
	Tracing Tracing `yaml:"tracing"`
}

// Poll configures the polling source.
type Poll struct {
	Interval      time.Duration `yaml:"interval" doc:"how long an idle worker waits before polling again"`
	BatchSize     int           `yaml:"batch_size" doc:"most messages one claim takes"`
	MaxBatchBytes int           `yaml:"max_batch_bytes" doc:"most payload bytes one claim takes (at least one message)"`
	Workers       int           `yaml:"workers" doc:"concurrent claims, each on its own slice of the keys"`
	Notify        bool          `yaml:"notify" doc:"wake on commit notifications (PostgreSQL LISTEN/NOTIFY, SQLite data_version); false: poll only"`
	MemberTTL     time.Duration `yaml:"member_ttl" doc:"a relay silent this long is presumed dead and its share of the keys moves to the others"`
}

// Sources of the relay (Config.Source).
const (
	SourcePoll   = "poll"
	SourceWAL    = "wal"
	SourceBinlog = "binlog"
)

// WAL configures the PostgreSQL logical replication source (source: wal).
type WAL struct {
	Slot             string `yaml:"slot" doc:"replication slot, created when missing and reused; one per outbox"`
	Mode             string `yaml:"mode" doc:"table (rows inserted into the outbox table) or logical (table-less pg_logical_emit_message)"`
	Publication      string `yaml:"publication" doc:"publication read through the slot; empty: the slot's name"`
	KeepAcked        bool   `yaml:"keep_acked" doc:"table mode: leave acknowledged rows (producers delete them in their own transaction)"`
	MessagePrefix    string `yaml:"message_prefix" doc:"logical mode: the prefix of the outbox's logical decoding messages"`
	BatchSize        int    `yaml:"batch_size" doc:"most messages in one published batch"`
	Workers          int    `yaml:"workers" doc:"batches published concurrently"`
	MaxInFlight      int    `yaml:"max_in_flight" doc:"messages read from the WAL and not yet acknowledged before reading pauses"`
	MaxRetainedBytes int    `yaml:"max_retained_bytes" doc:"warn when the slot holds back more WAL than this; negative: never" zero:"default"`
}

// Binlog configures the MariaDB/MySQL binlog source (source: binlog).
type Binlog struct {
	Name        string `yaml:"name" doc:"name of the binlog position and of the lock the relays on it share; empty: the table's name"`
	ServerID    int    `yaml:"server_id" doc:"replica server_id the relay connects as; 0: derived from binlog.name"`
	KeepAcked   bool   `yaml:"keep_acked" doc:"leave acknowledged rows (producers delete them in their own transaction)"`
	BatchSize   int    `yaml:"batch_size" doc:"most messages in one published batch"`
	Workers     int    `yaml:"workers" doc:"batches published concurrently"`
	MaxInFlight int    `yaml:"max_in_flight" doc:"messages read from the binlog and not yet acknowledged before reading pauses"`
}

// Relay configures retries and shutdown.
type Relay struct {
	MaxAttempts     int           `yaml:"max_attempts" doc:"failed attempts before a message goes to the dead letters"`
	BackoffBase     time.Duration `yaml:"backoff_base" doc:"first retry delay (doubles per attempt, full jitter)"`
	BackoffMax      time.Duration `yaml:"backoff_max" doc:"longest retry delay"`
	PublishTimeout  time.Duration `yaml:"publish_timeout" doc:"bound on one publish call to the sink"`
	BatchTimeout    time.Duration `yaml:"batch_timeout" doc:"bound on publishing one claimed batch; the rest is released for later"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" doc:"how long in-flight batches may finish after a stop signal"`
	PauseInterval   time.Duration `yaml:"pause_interval" doc:"how often the relay reads the operator pauses ('outbox pause', the admin API)"`
	ID              string        `yaml:"id" doc:"name of this relay among the live relays; empty: host-pid-random"`
}

// Admin configures the relay's admin HTTP server: /metrics, /healthz, /readyz and the JSON
// API (docs/operations.md).
type Admin struct {
	Addr          string        `yaml:"addr" doc:"listen address of the admin server (metrics, health, API), e.g. 127.0.0.1:9090; empty: no admin server"`
	Token         Secret        `yaml:"token" doc:"bearer token the admin API's mutating endpoints require (at least 16 bytes; secret); empty: they are disabled"`
	ReadToken     Secret        `yaml:"read_token" doc:"bearer token required to read metrics and the API (secret); empty: reading is open"`
	TLSCert       string        `yaml:"tls_cert" doc:"PEM certificate (chain) file: serve HTTPS"`
	TLSKey        string        `yaml:"tls_key" doc:"PEM private key file of admin.tls_cert"`
	MaxLag        time.Duration `yaml:"max_lag" doc:"/readyz fails while the oldest unpublished message is older than this; 0: no lag check"`
	StatsInterval time.Duration `yaml:"stats_interval" doc:"how often the backlog figures of the metrics are read (one query)"`
	TopicLabel    bool          `yaml:"topic_label" doc:"label the relay's message counters by topic (a series per topic: only for few, known topics)"`
	// Inboxes are consumers' inboxes (package inbox) on the same database that the API's
	// GET /api/v1/inboxes reports on.
	Inboxes []AdminInbox `yaml:"inboxes" doc:"consumers' inboxes on the same database the API reports on: a list of {table, consumer} (YAML only)"`
}

// Tracing configures the relay's OpenTelemetry traces (package tracing): a PRODUCER span
// "send {topic}" per publish call, exported over OTLP.
type Tracing struct {
	Endpoint    URL               `yaml:"endpoint" doc:"OTLP collector the relay exports its spans to: host:port or http(s)://host:port[/path]; empty: no tracing"`
	Protocol    string            `yaml:"protocol" doc:"OTLP transport: http/protobuf or grpc"`
	Insecure    bool              `yaml:"insecure" doc:"plain text to a host:port endpoint, without TLS (an http:// endpoint is plain text anyway)"`
	Headers     map[string]Secret `yaml:"headers" doc:"headers sent with every export, e.g. Authorization (YAML only, secret)"`
	SampleRatio float64           `yaml:"sample_ratio" doc:"share of traces sampled, 0 to 1, where the message's trace context does not decide (parent-based)"`
	ServiceName string            `yaml:"service_name" doc:"service.name of the relay's spans"`
}

// OTLP protocols (Tracing.Protocol).
const (
	ProtocolHTTP = "http/protobuf"
	ProtocolGRPC = "grpc"
)

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
	DefaultMaxBatchBytes   = 16 << 20
	DefaultWorkers         = 2
	DefaultMemberTTL       = 10 * time.Second
	DefaultMaxAttempts     = 25
	DefaultBackoffBase     = time.Second
	DefaultBackoffMax      = 5 * time.Minute
	DefaultPublishTimeout  = 30 * time.Second
	DefaultBatchTimeout    = time.Minute
	DefaultShutdownTimeout = 10 * time.Second
	DefaultPauseInterval   = 2 * time.Second
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "text"
	DefaultWALSlot         = "outbox"
	DefaultWALMode         = "table"
	DefaultSourceBatchSize = 1000
	DefaultSourceWorkers   = 4
	DefaultMaxInFlight     = 10000
	DefaultMaxRetained     = 1 << 30
	DefaultStatsInterval   = 10 * time.Second
	DefaultServiceName     = "outbox"
)

// Default returns the configuration used when nothing is set. It is valid except for
// DatabaseURL, which has no default.
func Default() Config {
	return Config{
		Table:  DefaultTable,
		Source: SourcePoll,
		Poll: Poll{
			Interval:      DefaultPollInterval,
			BatchSize:     DefaultBatchSize,
			MaxBatchBytes: DefaultMaxBatchBytes,
			Workers:       DefaultWorkers,
			Notify:        true,
			MemberTTL:     DefaultMemberTTL,
		},
		WAL: WAL{
			Slot:             DefaultWALSlot,
			Mode:             DefaultWALMode,
			MessagePrefix:    outbox.DefaultLogicalPrefix,
			BatchSize:        DefaultSourceBatchSize,
			Workers:          DefaultSourceWorkers,
			MaxInFlight:      DefaultMaxInFlight,
			MaxRetainedBytes: DefaultMaxRetained,
		},
		Binlog: Binlog{
			BatchSize:   DefaultSourceBatchSize,
			Workers:     DefaultSourceWorkers,
			MaxInFlight: DefaultMaxInFlight,
		},
		Relay: Relay{
			MaxAttempts:     DefaultMaxAttempts,
			BackoffBase:     DefaultBackoffBase,
			BackoffMax:      DefaultBackoffMax,
			PublishTimeout:  DefaultPublishTimeout,
			BatchTimeout:    DefaultBatchTimeout,
			ShutdownTimeout: DefaultShutdownTimeout,
			PauseInterval:   DefaultPauseInterval,
		},
		Sink:    DefaultSink(),
		Log:     Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
		Admin:   Admin{StatsInterval: DefaultStatsInterval},
		Tracing: Tracing{Protocol: ProtocolHTTP, SampleRatio: 1, ServiceName: DefaultServiceName},
	}
}

// Database is a parsed database_url.
type Database struct {
	Dialect outbox.Dialect
	// URL is the PostgreSQL connection string (Postgres only).
	URL string
	// DSN is the github.com/go-sql-driver/mysql data source name (MySQL only).
	DSN string
	// Path is the SQLite database file (SQLite only).
	Path string
}

// ParseDatabaseURL splits a database_url into its dialect and address. Accepted forms:
//
//	postgres://user:pass@host:5432/db?sslmode=disable   (also postgresql://)
//	mysql://user:pass@host:3306/db                     (also mariadb://; MySQL 8, MariaDB 10.6+)
//	sqlite:relative/path.db
//	sqlite:///absolute/path.db
//	sqlite://relative/path.db
func ParseDatabaseURL(s string) (Database, error) {
	switch {
	case s == "":
		return Database{}, fmt.Errorf("required: postgres://..., mysql://... or sqlite:PATH")
	case strings.HasPrefix(s, "postgres://"), strings.HasPrefix(s, "postgresql://"):
		if _, err := pgconn.ParseConfig(s); err != nil {
			return Database{}, err
		}
		return Database{Dialect: outbox.Postgres, URL: s}, nil
	case strings.HasPrefix(s, "mysql://"), strings.HasPrefix(s, "mariadb://"):
		dsn, err := mysql.DSNFromURL(s)
		if err != nil {
			var ce *outbox.ConfigError
			if errors.As(err, &ce) {
				return Database{}, errors.New(ce.Reason)
			}
			return Database{}, err
		}
		return Database{Dialect: outbox.MySQL, DSN: dsn}, nil
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
		return Database{}, fmt.Errorf("%s: must start with postgres://, postgresql://, mysql://, mariadb:// or sqlite:", redact(s)) //nolint:staticcheck // ST1005: the last word is the scheme sqlite:
	}
}

// redact quotes s, which may be a URL with credentials, for an error message: passwords,
// paths and queries are removed (see RedactURL) and long values cut.
func redact(s string) string {
	r := RedactURL(s)
	if len(r) > 60 {
		r = r[:60] + "…"
	}
	return fmt.Sprintf("%q", r)
}

// Database returns the parsed DatabaseURL. Call it after Validate.
func (c *Config) Database() (Database, error) {
	db, err := ParseDatabaseURL(string(c.DatabaseURL))
	if err != nil {
		return Database{}, &outbox.ConfigError{Field: "database_url", Reason: err.Error()}
	}
	return db, nil
}

func invalid(field, format string, args ...any) error {
	return &outbox.ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Validate checks every setting and returns the first problem as a *outbox.ConfigError naming
// the setting by its YAML path.
func (c *Config) Validate() error {
	db, err := ParseDatabaseURL(string(c.DatabaseURL))
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
	if err := c.validatePoll(); err != nil {
		return err
	}
	if err := c.validateRelay(); err != nil {
		return err
	}
	if err := c.validateSource(db.Dialect); err != nil {
		return err
	}
	if err := c.validateSinks(); err != nil {
		return err
	}

	if err := c.validateAdmin(); err != nil {
		return err
	}
	if err := c.validateTracing(); err != nil {
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

// validateSource checks source against the dialect, and the blocks of both log sources
// (wal, binlog), whichever source is used.
func (c *Config) validateSource(d outbox.Dialect) error {
	switch c.Source {
	case SourcePoll:
	case SourceWAL:
		if d != outbox.Postgres {
			return invalid("source", "wal reads PostgreSQL's write-ahead log: database_url must be postgres://... (with %s use poll)", d)
		}
		if len(c.Topics) > 0 {
			return invalid("topics", "the wal source reads every topic of the slot: topics needs source poll")
		}
	case SourceBinlog:
		if d != outbox.MySQL {
			return invalid("source", "binlog reads the MariaDB/MySQL binary log: database_url must be mysql://... (with %s use poll)", d)
		}
		if len(c.Topics) > 0 {
			return invalid("topics", "the binlog source reads every topic of the table: topics needs source poll")
		}
	default:
		return invalid("source", "%q is not one of poll, wal, binlog", c.Source)
	}
	def := Default()
	if err := checkBlock("wal", "wal.", c.WAL, def.WAL, c.WALConfig().Validate); err != nil {
		return err
	}
	if c.Binlog.ServerID < 0 || c.Binlog.ServerID > 1<<32-1 {
		// The library's is a uint32.
		return invalid("binlog.server_id", "must be between 0 and 4294967295")
	}
	if err := checkBlock("binlog", "binlog.", c.Binlog, def.Binlog, c.BinlogConfig().Validate); err != nil {
		return err
	}
	// The command's bound: a batch must be able to fill.
	for _, b := range []struct {
		prefix                 string
		batchSize, maxInFlight int
	}{
		{"wal", c.WAL.BatchSize, c.WAL.MaxInFlight},
		{"binlog", c.Binlog.BatchSize, c.Binlog.MaxInFlight},
	} {
		if b.maxInFlight < b.batchSize {
			return invalid(b.prefix+".max_in_flight", "must be at least %s.batch_size (%d)", b.prefix, b.batchSize)
		}
	}
	return nil
}

// validatePoll checks the polling source's settings, with retention and topics. The blocks
// of the log sources are checked whichever source is used (validateSource).
func (c *Config) validatePoll() error {
	// The command's bounds, tighter than the library's.
	switch p := &c.Poll; {
	case p.Interval < time.Millisecond || p.Interval > time.Hour:
		return invalid("poll.interval", "must be between 1ms and 1h")
	case p.MemberTTL < time.Second || p.MemberTTL > time.Hour:
		return invalid("poll.member_ttl", "must be between 1s and 1h")
	}
	return checkBlock("poll", "poll.", c.Poll, Default().Poll, c.PollConfig().Validate)
}

// validateRelay checks the relay's retries and shutdown.
func (c *Config) validateRelay() error {
	// The command's bounds, tighter than the library's: relay.id is stored and logged.
	switch r := &c.Relay; {
	case r.MaxAttempts < 1 || r.MaxAttempts > 1000000:
		return invalid("relay.max_attempts", "must be between 1 and 1000000")
	case len(r.ID) > 200:
		return invalid("relay.id", "longer than 200 bytes")
	case hasControl(r.ID):
		return invalid("relay.id", "contains a control character")
	}
	return checkBlock("relay", "relay.", c.Relay, Default().Relay, c.RelayConfig().Validate)
}

func (c *Config) validateAdmin() error {
	const minToken = 16 // admin.MinTokenBytes
	switch a := &c.Admin; {
	case a.Addr == "" && (a.Token != "" || a.ReadToken != "" || a.TLSCert != "" || a.TLSKey != "" || len(a.Inboxes) > 0):
		return invalid("admin.addr", "required when another admin setting is set")
	case a.Addr != "" && !strings.Contains(a.Addr, ":"):
		return invalid("admin.addr", "%q is not host:port (e.g. 127.0.0.1:9090, or :9090 for every interface)", a.Addr)
	case a.Token != "" && len(a.Token) < minToken:
		return invalid("admin.token", "must be at least %d bytes", minToken)
	case a.ReadToken != "" && len(a.ReadToken) < minToken:
		return invalid("admin.read_token", "must be at least %d bytes", minToken)
	case a.Token != "" && a.Token == a.ReadToken:
		return invalid("admin.read_token", "must differ from admin.token")
	case (a.TLSCert == "") != (a.TLSKey == ""):
		return invalid("admin.tls_key", "admin.tls_cert and admin.tls_key go together")
	case a.MaxLag < 0:
		return invalid("admin.max_lag", "must not be negative")
	case a.StatsInterval < 100*time.Millisecond:
		return invalid("admin.stats_interval", "must be at least 100ms")
	}
	return c.validateInboxes()
}

func (c *Config) validateTracing() error {
	t := &c.Tracing
	switch t.Protocol {
	case ProtocolHTTP, ProtocolGRPC:
	default:
		return invalid("tracing.protocol", "%q is not one of http/protobuf, grpc", t.Protocol)
	}
	switch {
	case math.IsNaN(t.SampleRatio) || t.SampleRatio < 0 || t.SampleRatio > 1:
		return invalid("tracing.sample_ratio", "must be between 0 and 1")
	case t.ServiceName == "":
		return invalid("tracing.service_name", "must not be empty")
	case len(t.ServiceName) > 200 || hasControl(t.ServiceName):
		return invalid("tracing.service_name", "must be at most 200 bytes without control characters")
	}
	for _, name := range sortedKeys(t.Headers) {
		if !validHeaderName(name) {
			return invalid("tracing.headers", "%q is not a valid header name", name)
		}
		if strings.ContainsAny(string(t.Headers[name]), "\r\n\x00") {
			return invalid("tracing.headers", "the value of %s holds a line break or NUL", name)
		}
	}
	if t.Endpoint == "" {
		if len(t.Headers) > 0 || t.Insecure {
			return invalid("tracing.endpoint", "required when tracing.headers or tracing.insecure is set")
		}
		return nil
	}
	e, err := c.Tracing.ParseEndpoint()
	if err != nil {
		return invalid("tracing.endpoint", "%s", err)
	}
	if t.Insecure && e.URL && !e.Insecure {
		return invalid("tracing.insecure", "contradicts the https:// endpoint (write http:// for plain text)")
	}
	return nil
}

// Endpoint is a parsed tracing.endpoint.
type Endpoint struct {
	// URL reports whether the endpoint was written as a URL (scheme://host:port[/path]).
	URL bool
	// HostPort is the collector's address.
	HostPort string
	// Path is the URL's path, "" when it had none or was written as host:port.
	Path string
	// Insecure reports plain text: an http:// URL, or host:port with tracing.insecure.
	Insecure bool
}

// ParseEndpoint parses tracing.endpoint: host:port, or an http:// or https:// URL without
// user info, query or fragment.
func (t Tracing) ParseEndpoint() (Endpoint, error) {
	s := string(t.Endpoint)
	if !strings.Contains(s, "://") {
		host, port, err := net.SplitHostPort(s)
		if err != nil || host == "" || port == "" {
			return Endpoint{}, fmt.Errorf("%s is not host:port or an http(s):// URL", redact(s))
		}
		return Endpoint{HostPort: s, Insecure: t.Insecure}, nil
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return Endpoint{}, fmt.Errorf("%s is not a URL", redact(s))
	case u.Scheme != "http" && u.Scheme != "https":
		return Endpoint{}, fmt.Errorf("%s: the scheme must be http or https", redact(s))
	case u.Host == "":
		return Endpoint{}, fmt.Errorf("%s has no host", redact(s))
	case u.User != nil:
		return Endpoint{}, fmt.Errorf("%s: credentials go in tracing.headers, not in the URL", redact(s))
	case u.RawQuery != "" || u.Fragment != "":
		return Endpoint{}, fmt.Errorf("%s: no query or fragment", redact(s))
	}
	hostPort := u.Host
	if u.Port() == "" {
		port := "443"
		if u.Scheme == "http" {
			port = "80"
		}
		hostPort = net.JoinHostPort(u.Hostname(), port)
	}
	return Endpoint{URL: true, HostPort: hostPort, Path: strings.TrimSuffix(u.Path, "/"), Insecure: u.Scheme == "http"}, nil
}

// validHeaderName reports whether name is an HTTP header field name (an RFC 9110 token).
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if r > 0x7e || r <= 0x20 || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return false
		}
	}
	return true
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}
