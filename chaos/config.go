package chaos

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// Sinks the checker can run against.
const (
	SinkNATS     = "nats"
	SinkKafka    = "kafka"
	SinkRabbitMQ = "rabbitmq"
	SinkRedis    = "redis"
	SinkMQTT     = "mqtt"
	SinkWebhook  = "webhook"
)

// Sinks lists every sink the checker supports, in the order the CI profile runs them.
var Sinks = []string{SinkNATS, SinkKafka, SinkRabbitMQ, SinkRedis, SinkMQTT, SinkWebhook}

// Databases the checker can run against.
const (
	// DatabasePostgres is the PostgreSQL server of Config.DatabaseURL; the run's tables are in
	// a schema of its own. Sources poll, wal and wal-logical.
	DatabasePostgres = "postgres"
	// DatabaseMariaDB is the MariaDB (or MySQL) server of Config.MySQLDSN, through the mysql
	// dialect; the run's tables are in a database of its own, and the relays log in as a user
	// created for the run. Sources poll and binlog.
	DatabaseMariaDB = "mariadb"
)

// Databases lists every database the checker supports.
var Databases = []string{DatabasePostgres, DatabaseMariaDB}

// Sources the checker can run the relays with.
const (
	// SourcePoll is the polling source, on either database: FOR UPDATE SKIP LOCKED claims,
	// LISTEN/NOTIFY wake-ups on PostgreSQL (MariaDB has none: the relays poll every 50ms);
	// the relays split the keys.
	SourcePoll = "poll"
	// SourceWAL is the WAL source in table mode (`--source wal`): one relay reads the slot,
	// the others wait as hot standbys; producers insert outbox rows.
	SourceWAL = "wal"
	// SourceWALLogical is the WAL source in logical mode: producers write table-less
	// messages (outbox.LogicalWriter) in their transactions.
	SourceWALLogical = "wal-logical"
	// SourceBinlog is MariaDB's binlog source (`--source binlog`): one relay streams the
	// binary log, holding the source's lock, the others wait as hot standbys; producers insert
	// outbox rows. Its starting position is saved before anything is produced.
	SourceBinlog = "binlog"
)

// Sources lists every source the checker supports.
var Sources = []string{SourcePoll, SourceWAL, SourceWALLogical, SourceBinlog}

// Fault kinds.
const (
	FaultKill          = "relay-kill"     // kill -9 of a relay process, restarted after a pause
	FaultBrokerRestart = "broker-restart" // the broker stops and starts again on the same port and store
	FaultBrokerCut     = "broker-cut"     // every relay↔broker connection cut, new ones refused for a while
	FaultDBCut         = "db-cut"         // every relay↔database connection cut, new ones refused for a while
	FaultDBTerminate   = "db-terminate"   // the relays' sessions ended by the server (pg_terminate_backend, KILL CONNECTION), reconnects refused for a while (a database restart as the relays see it)
	FaultPGRestart     = "pg-restart"     // a real restart of the PostgreSQL server (Config.PGRestart only)
	FaultConsumerKill  = "consumer-kill"  // kill -9 of a consumer process (Config.Consumers), restarted after a pause
)

// Config is one checker run. The zero value of every field but Sink is usable.
type Config struct {
	// Sink is the broker: SinkNATS (in-process JetStream server), SinkKafka (in-process kfake
	// cluster), SinkRabbitMQ (the shared server at AMQPURL), SinkRedis (a stream on the shared
	// server at RedisAddr), SinkMQTT (a topic tree on the shared broker at MQTTAddr) or
	// SinkWebhook (an in-process HTTP receiver). Required.
	Sink string
	// Database is the server of the outbox: DatabasePostgres or DatabaseMariaDB. Default:
	// DatabaseMariaDB for SourceBinlog, else DatabasePostgres.
	Database string
	// Source is the relays' source: SourcePoll (default, either database), SourceWAL or
	// SourceWALLogical (PostgreSQL), SourceBinlog (MariaDB).
	Source string
	// Duration is the length of the load and fault phase. Default 20s.
	Duration time.Duration
	// Messages, when positive, stops the producers after that many messages. When Rate is 0
	// it also sets the rate: Messages/Duration.
	Messages int
	// Rate is the target of committed and rolled-back messages per second, over all
	// producers. Default 200.
	Rate int
	// Keys is the number of ordering keys. Default 100.
	Keys int
	// Producers is how many goroutines commit transactions; each owns its keys, so that
	// transactions on one key never overlap. Default 8 (at most Keys).
	Producers int
	// TxMessages is the most messages one transaction carries: each has 1 to TxMessages,
	// evenly. Default 3 (two on average).
	TxMessages int
	// Relays is how many `outbox relay` processes share the table. Default 3.
	Relays int
	// StableRelayIDs restarts a killed relay under its old relay.id, so that it takes its
	// share of the keys back at once. By default each start gets a new id, as with the
	// command's default relay.id (host-pid-random): the dead relay's share then moves to the
	// others when its membership expires (member_ttl), which exercises the hand-over.
	StableRelayIDs bool
	// RollbackRatio is the share of transactions rolled back on purpose. Default 0.05.
	RollbackRatio float64
	// PayloadBytes pads each payload to about this size. Default 128.
	PayloadBytes int
	// Hostile, when positive, also writes that many hostile rows per second with plain SQL
	// (not through outbox.Enqueue), on the producers' keys and on keys of their own: rows the
	// relay's decoder cannot read and rows with headers the sinks must refuse, each class with
	// the fate it must meet (see Report.Hostile). Not with SourceWALLogical, which reads no
	// table. Default 0: none.
	Hostile int
	// Seed makes the fault schedule and the workload reproducible. Default: from the clock.
	Seed uint64

	// Consumers, when positive, also runs that many consumer processes
	// (chaos/cmd/outbox-chaos-consumer): the sink's inbox adapter on a subscription of their
	// own, all of them one inbox consumer (and one consumer group, durable or queue, where the
	// broker has them), applying each message's effect through the inbox in the run's
	// database, reached through the database's fault proxy. The report then checks the
	// effects too: none missing, none applied twice, each key's in order. Not with Hostile.
	// Default 0: the raw-delivery consumer only.
	Consumers int
	// ConsumerKillInterval is the mean pause between kill -9s of a consumer process.
	// Default 3s.
	ConsumerKillInterval time.Duration
	// ConsumerBinary is the consumer program to run. Default: built with `go build` from
	// the module the working directory is in.
	ConsumerBinary string

	// KillInterval is the mean pause between kill -9s of a relay. Default 2s.
	KillInterval time.Duration
	// FaultInterval is the mean pause between infrastructure faults (broker restart or cut,
	// database cut or terminate), which run one at a time. Default 2s.
	FaultInterval time.Duration
	// MaxOutage bounds how long one fault keeps its service away. Default 2.5s.
	MaxOutage time.Duration
	// Faults, when not empty, limits the run to these kinds (Fault* constants).
	Faults []string
	// PGRestart adds FaultPGRestart: PGRestartCommand restarts the PostgreSQL server itself.
	// Never on a server other runs share. PostgreSQL only.
	PGRestart bool
	// PGRestartCommand restarts PostgreSQL. Default: pg_ctlcluster <version> main restart
	// for the server's major version.
	PGRestartCommand []string

	// DatabaseURL is the PostgreSQL server (DatabasePostgres); the run creates (and drops) a
	// schema of its own. Default $OUTBOX_TEST_DATABASE_URL, else
	// postgres://postgres@127.0.0.1:5432/test.
	DatabaseURL string
	// MySQLDSN is the MariaDB server (DatabaseMariaDB), a github.com/go-sql-driver/mysql DSN
	// over TCP whose user may create databases and users and grant replication privileges;
	// the run creates (and drops) a database and a user of its own. Default
	// $OUTBOX_TEST_MYSQL_DSN, else root@tcp(127.0.0.1:3306)/test.
	MySQLDSN string
	// RedisAddr is the Redis server (host:port) for SinkRedis; the run uses a stream of its
	// own. Default $OUTBOX_TEST_REDIS_ADDR, else 127.0.0.1:6379.
	RedisAddr string
	// MQTTAddr is the MQTT 5 broker (host:port) for SinkMQTT; the run uses a topic tree of
	// its own. Default the host:port of $MQTT_URL; without it, a Mosquitto of the run's own
	// (the mosquitto binary on PATH, in the work dir, with max_queued_messages 0: at the
	// default of 1000, Mosquitto drops a disconnected session's messages beyond it, counting
	// those in flight, and the run would report them missing), else 127.0.0.1:1883.
	MQTTAddr string
	// AMQPURL is the RabbitMQ server for SinkRabbitMQ. Default $RABBITMQ_URL, else
	// amqp://guest:guest@127.0.0.1:5672/.
	AMQPURL string
	// OutboxBinary is the `outbox` command to run as relays. Default: built with `go build`
	// from the module the working directory is in.
	OutboxBinary string
	// WorkDir holds the relays' logs, the brokers' stores and the built binary. Default a
	// new temporary directory, removed after a run without violations unless Keep is set.
	WorkDir string
	// Keep keeps WorkDir and the run's schema (PostgreSQL) or database (MariaDB) after the
	// run.
	Keep bool
	// RelayLogLevel is the relays' log.level. Default "info".
	RelayLogLevel string
	// RelayEnv is extra configuration for the relays, OUTBOX_*=value each, applied after the
	// run's own (OUTBOX_RETENTION=1m, OUTBOX_POLL_WORKERS=4, OUTBOX_POLL_NOTIFY=false...).
	RelayEnv []string

	// SetupTimeout bounds the start (build, brokers, schema, relays). Default 3m.
	SetupTimeout time.Duration
	// DrainTimeout bounds the wait, after the producers stopped and the last fault healed,
	// for every committed message to be delivered. Default 60s.
	DrainTimeout time.Duration

	// Logger receives progress. Default: discard.
	Logger *slog.Logger

	// hook, when set (tests), runs at the start of the load phase.
	hook func(ctx context.Context, r *run, led *ledger) error
	// beforeVerify, when set (tests), runs after the drain, once the relays and consumers
	// stopped, before the checks.
	beforeVerify func(ctx context.Context, r *run) error
}

func (c *Config) setDefaults() {
	c.Source = cmp.Or(c.Source, SourcePoll)
	if c.Database == "" {
		c.Database = DatabasePostgres
		if c.Source == SourceBinlog {
			c.Database = DatabaseMariaDB
		}
	}
	c.Duration = cmp.Or(c.Duration, 20*time.Second)
	if c.Rate == 0 && c.Messages > 0 {
		c.Rate = max(1, int(float64(c.Messages)/c.Duration.Seconds()))
	}
	c.Rate = cmp.Or(c.Rate, 200)
	c.Keys = cmp.Or(c.Keys, 100)
	c.Producers = min(cmp.Or(c.Producers, 8), c.Keys)
	c.Relays = cmp.Or(c.Relays, 3)
	c.TxMessages = cmp.Or(c.TxMessages, 3)
	if c.RollbackRatio == 0 {
		c.RollbackRatio = 0.05
	}
	c.PayloadBytes = cmp.Or(c.PayloadBytes, 128)
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	c.KillInterval = cmp.Or(c.KillInterval, 2*time.Second)
	c.ConsumerKillInterval = cmp.Or(c.ConsumerKillInterval, 3*time.Second)
	c.FaultInterval = cmp.Or(c.FaultInterval, 2*time.Second)
	c.MaxOutage = cmp.Or(c.MaxOutage, 2500*time.Millisecond)
	c.DatabaseURL = cmp.Or(c.DatabaseURL, os.Getenv("OUTBOX_TEST_DATABASE_URL"), "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	c.MySQLDSN = cmp.Or(c.MySQLDSN, os.Getenv("OUTBOX_TEST_MYSQL_DSN"), "root@tcp(127.0.0.1:3306)/test")
	c.AMQPURL = cmp.Or(c.AMQPURL, os.Getenv("RABBITMQ_URL"), "amqp://guest:guest@127.0.0.1:5672/")
	c.RedisAddr = cmp.Or(c.RedisAddr, os.Getenv("OUTBOX_TEST_REDIS_ADDR"), "127.0.0.1:6379")
	if c.MQTTAddr == "" {
		if u, err := url.Parse(os.Getenv("MQTT_URL")); err == nil && u.Host != "" {
			c.MQTTAddr = u.Host
		}
	}
	c.RelayLogLevel = cmp.Or(c.RelayLogLevel, "info")
	c.SetupTimeout = cmp.Or(c.SetupTimeout, 3*time.Minute)
	c.DrainTimeout = cmp.Or(c.DrainTimeout, 60*time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

func (c *Config) validate() error {
	if !slices.Contains(Sinks, c.Sink) {
		return fmt.Errorf("chaos: sink: %q is not one of %v", c.Sink, Sinks)
	}
	if !slices.Contains(Databases, c.Database) {
		return fmt.Errorf("chaos: database: %q is not one of %v", c.Database, Databases)
	}
	if !slices.Contains(Sources, c.Source) {
		return fmt.Errorf("chaos: source: %q is not one of %v", c.Source, Sources)
	}
	switch {
	case c.wal() && c.Database != DatabasePostgres:
		return fmt.Errorf("chaos: source: %s reads PostgreSQL's write-ahead log: it needs database %s, not %s", c.Source, DatabasePostgres, c.Database)
	case c.Source == SourceBinlog && c.Database != DatabaseMariaDB:
		return fmt.Errorf("chaos: source: %s reads the MariaDB binary log: it needs database %s, not %s", c.Source, DatabaseMariaDB, c.Database)
	case c.PGRestart && c.Database != DatabasePostgres:
		return fmt.Errorf("chaos: pg restart: restarts the PostgreSQL server, and the run's database is %s", c.Database)
	}
	if c.Database == DatabaseMariaDB {
		if _, err := parseMySQLDSN(c.MySQLDSN); err != nil {
			return fmt.Errorf("chaos: mysql dsn: %w", err)
		}
	}
	switch {
	case c.Duration < time.Second:
		return fmt.Errorf("chaos: duration: %s is shorter than 1s", c.Duration)
	case c.Rate < 1:
		return fmt.Errorf("chaos: rate: must be positive")
	case c.Keys < 1:
		return fmt.Errorf("chaos: keys: must be positive")
	case c.TxMessages < 1:
		return fmt.Errorf("chaos: tx messages: must be positive")
	case c.Relays < 1:
		return fmt.Errorf("chaos: relays: must be positive")
	case c.Messages < 0:
		return fmt.Errorf("chaos: messages: must not be negative")
	case c.RollbackRatio < 0 || c.RollbackRatio >= 1:
		return fmt.Errorf("chaos: rollback ratio: must be in [0, 1)")
	case c.Hostile < 0 || c.Hostile > 1000:
		return fmt.Errorf("chaos: hostile: %d rows per second is not in [0, 1000]", c.Hostile)
	case c.Hostile > 0 && c.Source == SourceWALLogical:
		return fmt.Errorf("chaos: hostile: rows written with plain SQL go into the outbox table, which the %s source does not read", c.Source)
	case c.Consumers < 0 || c.Consumers > 32:
		return fmt.Errorf("chaos: consumers: %d is not in [0, 32]", c.Consumers)
	case c.Consumers > 0 && c.Hostile > 0:
		return fmt.Errorf("chaos: consumers: not with hostile rows (the consumers' effects are checked against the producers' messages only)")
	case c.Consumers > 0 && !slices.Contains(ConsumerSinks, c.Sink):
		return fmt.Errorf("chaos: consumers: the %s sink has no inbox adapter wired into the checker; consumers run on %v", c.Sink, ConsumerSinks)
	}
	for _, kv := range c.RelayEnv {
		if k, _, ok := strings.Cut(kv, "="); !ok || !strings.HasPrefix(k, "OUTBOX_") {
			return fmt.Errorf("chaos: relay env: %q is not OUTBOX_NAME=value", kv)
		}
	}
	known := []string{FaultKill, FaultBrokerRestart, FaultBrokerCut, FaultDBCut, FaultDBTerminate, FaultPGRestart, FaultConsumerKill}
	for _, f := range c.Faults {
		if !slices.Contains(known, f) {
			return fmt.Errorf("chaos: faults: unknown kind %q; known: %v", f, known)
		}
	}
	if slices.Contains(c.Faults, FaultPGRestart) && !c.PGRestart {
		return fmt.Errorf("chaos: faults: %s needs PGRestart (it restarts the whole PostgreSQL server)", FaultPGRestart)
	}
	return nil
}

// wal reports whether the relays run the WAL source.
func (c *Config) wal() bool { return c.Source == SourceWAL || c.Source == SourceWALLogical }

// enabled reports whether fault kind f may run.
func (c *Config) enabled(f string) bool {
	if f == FaultPGRestart && !c.PGRestart || f == FaultConsumerKill && c.Consumers == 0 {
		return false
	}
	return len(c.Faults) == 0 || slices.Contains(c.Faults, f)
}
