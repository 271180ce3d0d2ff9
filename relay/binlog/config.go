package binlog

import (
	"cmp"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/sqlident"
)

// Defaults.
const (
	DefaultBatchSize         = 1000
	DefaultBatchLinger       = time.Millisecond
	DefaultWorkers           = 4
	DefaultMaxInFlight       = 10000
	DefaultMaxInFlightBytes  = 256 << 20
	DefaultReconnectInterval = 2 * time.Second
	DefaultShutdownTimeout   = 10 * time.Second
	DefaultPositionInterval  = time.Second
	DefaultHeartbeatInterval = 30 * time.Second
)

// Config configures a Source. DSN and DB are required.
type Config struct {
	// DSN is the replication connection, a github.com/go-sql-driver/mysql data source name
	// (user:password@tcp(host:port)/db?param=value; its database is ignored). The user needs
	// the REPLICATION SLAVE and REPLICATION CLIENT privileges (MariaDB 10.5+: REPLICATION
	// SLAVE and BINLOG MONITOR). TLS parameters (tls=true, a registered config) are honoured.
	DSN string
	// DB runs the ordinary queries: deleting acknowledged rows, writing dead letters, reading
	// and saving the position, and holding the source's lock (on one dedicated connection). It
	// must reach the same server as DSN. An unqualified Table is in DB's current database. It
	// needs at least two connections (the lock's, and one for the writes). The Source does not
	// close it.
	DB *sql.DB
	// Table is the outbox table, optionally qualified with its database ("shop.outbox").
	// Default outbox.DefaultTable. Its dead-letter table (Table + "_dead") and position table
	// (Table + "_binlog") are created by the mysql store's migrations (outbox migrate up).
	Table string
	// Name names the source: its row in the position table and its lock. Sources with the same
	// Name on the same table are one relay: one publishes, the others stand by. Letters,
	// digits and _ - . : only, at most 64 characters. Default: Table.
	Name string
	// ServerID is the server_id this source registers with as a replica: unique among the
	// server's replicas, not 0, not the server's own. Default: a stable value derived from the
	// database, the table and Name (moved off the server's own id if they collide).
	ServerID uint32
	// KeepAcked leaves acknowledged rows in the table: set it when the producer deletes its
	// outbox rows itself, in the same transaction as the insert (the insert still travels in
	// the binary log), so the table stays empty. By default the source deletes acknowledged
	// rows, in batches.
	KeepAcked bool
	// BatchSize is the most messages in one batch. Default 1000.
	BatchSize int
	// Workers is how many batches are published concurrently (relay.Concurrent). Default 4.
	Workers int
	// MaxInFlight bounds the messages read from the binary log and not yet done (acknowledged
	// and deleted, or dead-lettered): beyond it the source stops reading. Default 10,000.
	MaxInFlight int
	// ReconnectInterval is the pause before reconnecting after the stream or the database
	// failed, and between attempts of a standby to take the lock. Default 2s.
	// ShutdownTimeout is how long Run, once its context ends, waits for batches in flight to
	// finish so that their position can be saved. Default 10s.
	// PositionInterval is how often the position is saved once messages are done (and how
	// often the lock's connection is checked). Default 1s.
	ReconnectInterval, ShutdownTimeout, PositionInterval time.Duration
	// Logger receives diagnostics. Default slog.Default().
	Logger *slog.Logger

	// BatchLinger is how long Next waits for a batch to fill once some message is ready, while
	// other batches are being published. Default 1ms; negative means no wait.
	BatchLinger time.Duration
	// MaxInFlightBytes bounds the payload bytes of the messages not yet done, as MaxInFlight
	// bounds their number. Default 256 MiB.
	MaxInFlightBytes int64
	// HeartbeatInterval is how often the position is saved when only other traffic (other
	// tables, other databases) moved it: it keeps the saved position near the server's, so
	// that a restart re-reads little and expiring binary logs never pass it. Default 30s;
	// negative disables (the position is then saved only after outbox messages).
	HeartbeatInterval time.Duration
}

// Validate reports the first invalid setting of c as an *outbox.ConfigError naming the field
// in snake_case (name, batch_size, ...). Zero values are valid: New replaces them by their
// defaults. The connections, DSN and DB, are not checked, so that a configuration can be
// checked before the database is reached; New checks them first.
func (c Config) Validate() error {
	c.fillDefaults()
	return c.check()
}

// withDefaults fills zero fields and validates. It returns the parsed replication DSN and the
// table name.
func (c *Config) withDefaults() (*gomysql.Config, sqlident.Table, error) {
	c.fillDefaults()
	bad := func(field, reason string) (*gomysql.Config, sqlident.Table, error) {
		return nil, sqlident.Table{}, &outbox.ConfigError{Field: field, Reason: reason}
	}
	if c.DSN == "" {
		return bad("dsn", "required (the replication connection: user:password@tcp(host:port)/)")
	}
	mc, err := gomysql.ParseDSN(c.DSN)
	if err != nil {
		return bad("dsn", err.Error())
	}
	if mc.Net != "tcp" && mc.Net != "unix" {
		return bad("dsn", fmt.Sprintf("network %q: want tcp or unix", mc.Net))
	}
	if c.DB == nil {
		return bad("db", "required")
	}
	if err := c.check(); err != nil {
		return nil, sqlident.Table{}, err
	}
	t, _ := sqlident.Parse(c.Table) // checked by check
	return mc, t, nil
}

// fillDefaults replaces the zero settings of c by the defaults.
func (c *Config) fillDefaults() {
	c.Table = cmp.Or(c.Table, outbox.DefaultTable)
	c.Name = cmp.Or(c.Name, c.Table)
	c.BatchSize = cmp.Or(c.BatchSize, DefaultBatchSize)
	c.BatchLinger = cmp.Or(c.BatchLinger, DefaultBatchLinger)
	c.Workers = cmp.Or(c.Workers, DefaultWorkers)
	c.MaxInFlight = cmp.Or(c.MaxInFlight, DefaultMaxInFlight)
	c.MaxInFlightBytes = cmp.Or(c.MaxInFlightBytes, DefaultMaxInFlightBytes)
	c.ReconnectInterval = cmp.Or(c.ReconnectInterval, DefaultReconnectInterval)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.PositionInterval = cmp.Or(c.PositionInterval, DefaultPositionInterval)
	c.HeartbeatInterval = cmp.Or(c.HeartbeatInterval, DefaultHeartbeatInterval)
	c.Logger = cmp.Or(c.Logger, slog.Default())
}

// check validates the settings of c, whose defaults are filled.
func (c *Config) check() error {
	bad := func(field, reason string) error {
		return &outbox.ConfigError{Field: field, Reason: reason}
	}
	if _, err := sqlident.Parse(c.Table); err != nil {
		return bad("table", err.Error())
	}
	if reason := checkName(c.Name); reason != "" {
		return bad("name", reason)
	}
	switch {
	case c.BatchSize < 1 || c.BatchSize > 100000:
		return bad("batch_size", "must be between 1 and 100000")
	case c.Workers < 1 || c.Workers > 256:
		return bad("workers", "must be between 1 and 256")
	case c.MaxInFlight < 1:
		return bad("max_in_flight", "must be positive")
	case c.MaxInFlightBytes < 1:
		return bad("max_in_flight_bytes", "must be positive")
	case c.ReconnectInterval < 10*time.Millisecond:
		return bad("reconnect_interval", "must be at least 10ms")
	case c.ShutdownTimeout < 0:
		return bad("shutdown_timeout", "must not be negative")
	case c.PositionInterval < 10*time.Millisecond:
		return bad("position_interval", "must be at least 10ms")
	case c.HeartbeatInterval > 0 && c.HeartbeatInterval < c.PositionInterval:
		return bad("heartbeat_interval", "must be at least position_interval (or negative to disable)")
	}
	return nil
}

// checkName validates a source name: it is stored in the position table and shown in logs.
func checkName(name string) string {
	if name == "" {
		return "required"
	}
	if len(name) > 64 {
		return "longer than 64 characters"
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-', c == '.', c == ':':
		default:
			return fmt.Sprintf("character %q not allowed (letters, digits and _ - . : only)", c)
		}
	}
	return ""
}
