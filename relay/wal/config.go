package wal

import (
	"cmp"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/sqlident"
)

// Mode selects where messages are stored.
type Mode string

// Modes.
const (
	// ModeTable reads inserts into the outbox table through a publication, and deletes the
	// rows once their messages are acknowledged (unless KeepAcked).
	ModeTable Mode = "table"
	// ModeLogical reads logical decoding messages written by outbox.LogicalWriter
	// (pg_logical_emit_message): nothing is stored in any table.
	ModeLogical Mode = "logical"
)

// Defaults.
const (
	DefaultBatchSize         = 1000
	DefaultBatchLinger       = time.Millisecond
	DefaultWorkers           = 4
	DefaultStatusInterval    = time.Second
	DefaultMaxInFlight       = 10000
	DefaultMaxInFlightBytes  = 256 << 20
	DefaultMaxRetainedBytes  = 1 << 30
	DefaultHeartbeatInterval = 10 * time.Second
	DefaultLagCheckInterval  = 30 * time.Second
	DefaultReconnectInterval = 2 * time.Second
	DefaultShutdownTimeout   = 10 * time.Second
)

// Config configures a Source. ConnString, Pool and SlotName are required.
type Config struct {
	// ConnString is the replication connection: the database URL (or DSN) with
	// replication=database, which is added when missing. The role needs the REPLICATION
	// attribute (or superuser) and, to create the publication, CREATE on the database.
	ConnString string
	// Pool runs the ordinary queries: deleting acknowledged rows, writing dead letters,
	// heartbeats, the lag check, creating the publication. It must reach the same database as
	// ConnString. The Source does not close it.
	Pool *pgxpool.Pool
	// Mode is ModeTable (default) or ModeLogical.
	Mode Mode
	// Table is the outbox table, optionally schema-qualified. Default "outbox". In logical
	// mode only its dead-letter table (Table + "_dead", created by the postgres store's
	// migrations) is used.
	Table string
	// KeepAcked leaves acknowledged rows in the table (table mode): set it when the producer
	// deletes its outbox rows itself, in the same transaction as the insert, so the table
	// stays empty and only the WAL carries the messages. By default the source deletes
	// acknowledged rows (DELETE ... WHERE id = ANY, in batches).
	KeepAcked bool
	// SlotName is the replication slot: lowercase letters, digits and underscores, at most 63
	// characters. It is created when missing (permanent, pgoutput) and reused on restart; one
	// slot per outbox. A second Source on the same slot waits as a hot standby.
	SlotName string
	// Publication is the publication name. Default SlotName. In table mode it is created
	// FOR TABLE Table WITH (publish = 'insert') when missing; in logical mode it is created
	// empty (pgoutput needs one).
	Publication string
	// MessagePrefix is the logical decoding message prefix of the messages (logical mode; see
	// outbox.LogicalWriterConfig.Prefix). Heartbeats use MessagePrefix + "-heartbeat".
	// Default outbox.DefaultLogicalPrefix.
	MessagePrefix string
	// BatchSize is the most messages in one batch. Default 1000.
	BatchSize int
	// BatchLinger is how long Next waits for a batch to fill once some message is ready.
	// Default 1ms; negative means no wait.
	BatchLinger time.Duration
	// Workers is how many batches are published concurrently (relay.Concurrent). Default 4.
	Workers int
	// StatusInterval is how often the source reports its confirmed position to the server.
	// Default 1s.
	StatusInterval time.Duration
	// MaxInFlight bounds the messages read from the WAL and not yet done (acknowledged or
	// dead-lettered): beyond it the source stops reading the stream. Default 10,000.
	MaxInFlight int
	// MaxInFlightBytes bounds their payload bytes the same way. Default 256 MiB.
	MaxInFlightBytes int64
	// MaxRetainedBytes: when the slot holds back more WAL than this, the source logs a
	// warning at each lag check. Default 1 GiB; negative disables the check.
	MaxRetainedBytes int64
	// HeartbeatInterval is how often the source writes a non-transactional heartbeat message
	// into the WAL, so a quiet database still gives it a position to confirm. Default 10s;
	// negative disables.
	HeartbeatInterval time.Duration
	// LagCheckInterval is how often the retained WAL is compared with MaxRetainedBytes.
	// Default 30s.
	LagCheckInterval time.Duration
	// ReconnectInterval is the pause before reconnecting after the stream failed, and between
	// attempts to take a slot held by another relay. Default 2s.
	ReconnectInterval time.Duration
	// ShutdownTimeout is how long Run, once its context ends, waits for batches in flight to
	// finish so their position can be confirmed before it disconnects. Default 10s.
	ShutdownTimeout time.Duration
	// Logger receives diagnostics. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid setting of c as an *outbox.ConfigError naming the field
// in snake_case (slot_name, mode, batch_size, ...). Zero values are valid: New replaces them
// by their defaults. The connections, ConnString and Pool, are not checked, so that a
// configuration can be checked before the database is reached; New checks them first.
func (c Config) Validate() error {
	c.fillDefaults()
	return c.check()
}

// withDefaults fills zero fields and validates. It returns the parsed replication connection
// configuration and table name.
func (c *Config) withDefaults() (*pgconn.Config, sqlident.Table, error) {
	c.fillDefaults()
	if c.ConnString == "" {
		return nil, sqlident.Table{}, &outbox.ConfigError{Field: "conn_string", Reason: "required (a replication connection: replication=database)"}
	}
	pc, err := pgconn.ParseConfig(c.ConnString)
	if err != nil {
		return nil, sqlident.Table{}, &outbox.ConfigError{Field: "conn_string", Reason: err.Error()}
	}
	switch r := pc.RuntimeParams["replication"]; r {
	case "":
		pc.RuntimeParams["replication"] = "database"
	case "database":
	default:
		return nil, sqlident.Table{}, &outbox.ConfigError{Field: "conn_string",
			Reason: fmt.Sprintf("replication=%s: logical replication needs replication=database", r)}
	}
	if c.Pool == nil {
		return nil, sqlident.Table{}, &outbox.ConfigError{Field: "pool", Reason: "required"}
	}
	if err := c.check(); err != nil {
		return nil, sqlident.Table{}, err
	}
	t, _ := sqlident.Parse(c.Table) // checked by check
	// The walsender formats column values with these settings (table mode): pin them so the
	// decoder does not depend on the server's defaults.
	pc.RuntimeParams["DateStyle"] = "ISO, MDY"
	pc.RuntimeParams["TimeZone"] = "UTC"
	pc.RuntimeParams["bytea_output"] = "hex"
	pc.RuntimeParams["extra_float_digits"] = "3"
	if pc.RuntimeParams["application_name"] == "" {
		pc.RuntimeParams["application_name"] = "outbox-relay-wal"
	}
	return pc, t, nil
}

// fillDefaults replaces the zero settings of c by the defaults.
func (c *Config) fillDefaults() {
	c.Mode = cmp.Or(c.Mode, ModeTable)
	c.Table = cmp.Or(c.Table, outbox.DefaultTable)
	c.Publication = cmp.Or(c.Publication, c.SlotName)
	c.MessagePrefix = cmp.Or(c.MessagePrefix, outbox.DefaultLogicalPrefix)
	c.BatchSize = cmp.Or(c.BatchSize, DefaultBatchSize)
	c.BatchLinger = cmp.Or(c.BatchLinger, DefaultBatchLinger)
	c.Workers = cmp.Or(c.Workers, DefaultWorkers)
	c.StatusInterval = cmp.Or(c.StatusInterval, DefaultStatusInterval)
	c.MaxInFlight = cmp.Or(c.MaxInFlight, DefaultMaxInFlight)
	c.MaxInFlightBytes = cmp.Or(c.MaxInFlightBytes, DefaultMaxInFlightBytes)
	c.MaxRetainedBytes = cmp.Or(c.MaxRetainedBytes, DefaultMaxRetainedBytes)
	c.HeartbeatInterval = cmp.Or(c.HeartbeatInterval, DefaultHeartbeatInterval)
	c.LagCheckInterval = cmp.Or(c.LagCheckInterval, DefaultLagCheckInterval)
	c.ReconnectInterval = cmp.Or(c.ReconnectInterval, DefaultReconnectInterval)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.Logger = cmp.Or(c.Logger, slog.Default())
}

// check validates the settings of c, whose defaults are filled.
func (c *Config) check() error {
	if _, err := sqlident.Parse(c.Table); err != nil {
		return &outbox.ConfigError{Field: "table", Reason: err.Error()}
	}
	if reason := checkName(c.SlotName, true); reason != "" {
		return &outbox.ConfigError{Field: "slot_name", Reason: reason}
	}
	if reason := checkName(c.Publication, false); reason != "" {
		return &outbox.ConfigError{Field: "publication", Reason: reason}
	}
	if err := outbox.CheckLogicalPrefix(c.MessagePrefix); err != nil {
		return &outbox.ConfigError{Field: "message_prefix", Reason: err.Error()}
	}
	switch {
	case c.Mode != ModeTable && c.Mode != ModeLogical:
		return &outbox.ConfigError{Field: "mode", Reason: fmt.Sprintf("%q is not one of table, logical", c.Mode)}
	case c.BatchSize < 1 || c.BatchSize > 100000:
		return &outbox.ConfigError{Field: "batch_size", Reason: "must be between 1 and 100000"}
	case c.Workers < 1 || c.Workers > 256:
		return &outbox.ConfigError{Field: "workers", Reason: "must be between 1 and 256"}
	case c.StatusInterval < 10*time.Millisecond:
		return &outbox.ConfigError{Field: "status_interval", Reason: "must be at least 10ms"}
	case c.MaxInFlight < 1:
		return &outbox.ConfigError{Field: "max_in_flight", Reason: "must be positive"}
	case c.MaxInFlightBytes < 1:
		return &outbox.ConfigError{Field: "max_in_flight_bytes", Reason: "must be positive"}
	case c.LagCheckInterval < 0:
		return &outbox.ConfigError{Field: "lag_check_interval", Reason: "must not be negative"}
	case c.HeartbeatInterval > 0 && c.HeartbeatInterval < 10*time.Millisecond:
		return &outbox.ConfigError{Field: "heartbeat_interval", Reason: "must be at least 10ms (or negative to disable)"}
	case c.ReconnectInterval < 10*time.Millisecond:
		return &outbox.ConfigError{Field: "reconnect_interval", Reason: "must be at least 10ms"}
	case c.ShutdownTimeout < 0:
		return &outbox.ConfigError{Field: "shutdown_timeout", Reason: "must not be negative"}
	}
	return nil
}

// checkName validates a slot name (lowercase letters, digits, underscore: PostgreSQL's rule)
// or a publication name (an identifier, always quoted).
func checkName(name string, slot bool) string {
	if name == "" {
		return "required"
	}
	if len(name) > 63 {
		return "longer than 63 characters"
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c == '_', c >= '0' && c <= '9' && (slot || i > 0):
		case !slot && c >= 'A' && c <= 'Z':
		default:
			if slot {
				return fmt.Sprintf("character %q not allowed (lowercase letters, digits and underscores only)", c)
			}
			return fmt.Sprintf("character %q not allowed (letters, digits and underscores, not starting with a digit)", c)
		}
	}
	return ""
}
