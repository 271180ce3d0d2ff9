package inbox

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/sqlident"
)

// Defaults of Config.
const (
	DefaultTable        = "inbox"
	DefaultMaxAttempts  = 10
	DefaultRetention    = 7 * 24 * time.Hour
	DefaultKeyRetention = 90 * 24 * time.Hour
)

// ClockSkewMargin is how much the sender's clock (Message.Time) may run ahead of this
// process's clock without a late duplicate being applied: a message is taken as possibly aged
// out of the id window once it is older than Retention minus this margin.
const ClockSkewMargin = 5 * time.Minute

// Limits of the stored identifiers: the MySQL columns are VARCHARs of these sizes.
const (
	MaxConsumerBytes = 200
	MaxIDBytes       = 255
	MaxKeyBytes      = 255
	maxErrorBytes    = 4096
)

// ErrDeadLettered is returned by Attempt when the message has been delivered more than
// MaxAttempts times: it was moved to the dead letters and recorded as processed. The caller
// acks it without running the handler.
var ErrDeadLettered = errors.New("inbox: message dead-lettered")

// ErrInvalidMessage is wrapped by the errors of messages the inbox cannot record.
var ErrInvalidMessage = errors.New("inbox: invalid message")

// Message is a delivered message, decoded from the broker by an adapter.
type Message struct {
	// ID is the message id as sent (the outbox's message_id): what duplicates share.
	ID string
	// Topic, Type, Source and Key are the message's routing and CloudEvents attributes.
	Topic  string
	Type   string
	Source string
	Key    string
	// Time is when the message was created (the outbox's created_at); zero when unknown.
	Time time.Time
	// Headers are the user headers.
	Headers map[string]string
	// Payload is the body.
	Payload []byte
	// Position is the sender's per-key position (the outbox row id or the WAL LSN): greater
	// means later among the messages of one key. 0 means unknown.
	Position int64
}

func (m *Message) validate() error {
	switch {
	case m.ID == "":
		return fmt.Errorf("%w: empty id", ErrInvalidMessage)
	case len(m.ID) > MaxIDBytes:
		return fmt.Errorf("%w: id longer than %d bytes", ErrInvalidMessage, MaxIDBytes)
	case len(m.Key) > MaxKeyBytes:
		return fmt.Errorf("%w: key longer than %d bytes", ErrInvalidMessage, MaxKeyBytes)
	case !utf8.ValidString(m.ID) || !utf8.ValidString(m.Key):
		return fmt.Errorf("%w: id and key must be UTF-8", ErrInvalidMessage)
	case m.Position < 0:
		return fmt.Errorf("%w: negative position", ErrInvalidMessage)
	}
	return nil
}

// Config configures an Inbox.
type Config struct {
	// Dialect of the database: outbox.Postgres (default), outbox.MySQL or outbox.SQLite.
	Dialect outbox.Dialect
	// Table is the processed-ids table, optionally schema-qualified. Default "inbox". The
	// inbox also uses <Table>_keys, <Table>_attempts, <Table>_dead and <Table>_migrations.
	Table string
	// Consumer names the consumer (or consumer group): its ids, keys and dead letters are
	// its own. Required; at most 200 bytes of printable UTF-8.
	Consumer string
	// MaxAttempts is how many deliveries a message gets before it is dead-lettered.
	// Default 10.
	MaxAttempts int
	// Retention is how long processed ids are kept: a redelivery later than that is caught
	// only by the key's position (see the package documentation). It must exceed the
	// broker's redelivery horizon (its longest redelivery delay or retention). Default 7 days.
	Retention time.Duration
	// KeyRetention is how long the position kept for a key (folded from its expired ids)
	// stays once no more of its ids expire: at least Retention after the key's last message.
	// Default 90 days; at least Retention.
	KeyRetention time.Duration
	// Pool (PostgreSQL) or DB (any dialect) is the database the inbox uses for what is not
	// the handler's: the attempt counts, dead letters, retention and migrations. Exactly one.
	Pool *pgxpool.Pool
	DB   *sql.DB
	// Backoff is the redelivery delay after the attempt-th failed delivery of a message
	// (Outcome.Delay). Default DefaultBackoff.
	Backoff func(attempt int) time.Duration
	// Logger receives RunRetention's errors. Default slog.Default().
	Logger *slog.Logger
	// Hooks are told about every delivery (metrics, tracing): each is called through the
	// hook interfaces it implements (HookDelivered). One that implements none is refused.
	Hooks []Hook
}

// withDefaults returns cfg with its zero fields set to their defaults.
func (cfg Config) withDefaults() Config {
	cfg.Dialect = cmp.Or(cfg.Dialect, outbox.Postgres)
	cfg.Table = cmp.Or(cfg.Table, DefaultTable)
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, DefaultMaxAttempts)
	cfg.Retention = cmp.Or(cfg.Retention, DefaultRetention)
	cfg.KeyRetention = cmp.Or(cfg.KeyRetention, DefaultKeyRetention)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Backoff == nil {
		cfg.Backoff = DefaultBackoff
	}
	return cfg
}

// Validate checks cfg, with defaults applied, and returns a *outbox.ConfigError naming the
// first wrong field.
func (cfg Config) Validate() error {
	_, err := cfg.withDefaults().table()
	return err
}

func (cfg Config) table() (sqlident.Table, error) {
	bad := func(field, reason string) error { return &outbox.ConfigError{Field: field, Reason: reason} }
	if cfg.Dialect != outbox.Postgres && cfg.Dialect != outbox.MySQL && cfg.Dialect != outbox.SQLite {
		return sqlident.Table{}, bad("dialect", fmt.Sprintf("%q is not one of postgres, mysql, sqlite", cfg.Dialect))
	}
	t, err := sqlident.Parse(cfg.Table)
	if err != nil {
		return sqlident.Table{}, bad("table", err.Error())
	}
	if cfg.Dialect == outbox.SQLite && t.Schema != "" {
		return sqlident.Table{}, bad("table", "SQLite tables cannot be schema-qualified")
	}
	switch {
	case cfg.Consumer == "":
		return t, bad("consumer", "required")
	case len(cfg.Consumer) > MaxConsumerBytes:
		return t, bad("consumer", fmt.Sprintf("longer than %d bytes", MaxConsumerBytes))
	case !printable(cfg.Consumer):
		return t, bad("consumer", "must be printable UTF-8")
	case cfg.MaxAttempts < 1:
		return t, bad("max_attempts", "must be at least 1")
	case cfg.Retention <= ClockSkewMargin:
		return t, bad("retention", fmt.Sprintf("must exceed the clock skew margin (%v)", ClockSkewMargin))
	case cfg.KeyRetention < cfg.Retention:
		return t, bad("key_retention", "must be at least retention")
	case (cfg.Pool == nil) == (cfg.DB == nil):
		return t, bad("db", "set exactly one of Pool and DB")
	case cfg.Pool != nil && cfg.Dialect != outbox.Postgres:
		return t, bad("pool", "a pgx pool needs the postgres dialect")
	}
	return t, nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// Inbox deduplicates and applies delivered messages for one consumer. It is safe for
// concurrent use.
type Inbox struct {
	cfg   Config
	table sqlident.Table
	db    handle // the inbox's own database handle
	q     queries
	hooks hooks
}

// New validates cfg and returns an Inbox. It does not touch the database: run MigrateUp to
// create the tables.
func New(_ context.Context, cfg Config) (*Inbox, error) {
	cfg = cfg.withDefaults()
	t, err := cfg.table()
	if err != nil {
		return nil, err
	}
	hks, err := newHooks(cfg.Hooks)
	if err != nil {
		return nil, err
	}
	in := &Inbox{cfg: cfg, table: t, q: buildQueries(cfg.Dialect, t), hooks: hks}
	if cfg.Pool != nil {
		in.db = pgxHandle{cfg.Pool}
	} else {
		in.db = sqlHandle{cfg.DB}
	}
	return in, nil
}

// Consumer returns the configured consumer name.
func (in *Inbox) Consumer() string { return in.cfg.Consumer }

// MaxAttempts returns the configured (or default) MaxAttempts: adapters check that the
// broker's own redelivery limit leaves the inbox room to dead-letter a message.
func (in *Inbox) MaxAttempts() int { return in.cfg.MaxAttempts }

func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMicro()
}

func fromMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return time.UnixMicro(us).UTC()
}

// Dialect returns the configured dialect.
func (in *Inbox) Dialect() outbox.Dialect { return in.cfg.Dialect }
