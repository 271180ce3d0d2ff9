// Command outbox-chaos runs the fault-injection checker of the outbox relay: producers commit
// (and roll back) messages over many keys, several `outbox relay` processes publish them to a
// broker while relays are killed, the broker restarts and connections are cut, and a consumer
// checks that nothing was lost, nothing invented and per-key order held.
//
//	go run ./chaos/cmd/outbox-chaos --sink nats --duration 20s
//	go run ./chaos/cmd/outbox-chaos --sink nats --duration 10m --messages 1000000 --keys 1000
//	go run ./chaos/cmd/outbox-chaos --sink nats --database mariadb --source poll
//	go run ./chaos/cmd/outbox-chaos --sink nats --source binlog    # MariaDB's binary log
//	go run ./chaos/cmd/outbox-chaos --sink kafka --consumers 3     # and the effects of 3 inbox consumers
//
// It exits 0 when every guarantee held, 1 when messages were lost or invented or per-key order
// was violated (with --consumers, also when an effect is missing, applied twice or out of its
// key's order), 2 on invalid flags and 3 when the run itself failed (a service missing).
// It stops by itself: every phase has a deadline. See docs/reliability.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/outboxgo/outbox/chaos"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The first signal stops the run cleanly (relays stopped, schema dropped); a second one
	// kills at once.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("outbox-chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg       chaos.Config
		sinks     string
		faults    string
		asJSON    bool
		jsonOut   string
		verbose   bool
		pgRestart string
	)
	fs.StringVar(&sinks, "sink", chaos.SinkNATS, "broker: nats, kafka, rabbitmq, redis, mqtt or webhook, or a comma-separated list (run one after the other)")
	fs.StringVar(&cfg.Database, "database", "", "database of the outbox: postgres or mariadb (default: mariadb for --source binlog, else postgres)")
	fs.StringVar(&cfg.Source, "source", chaos.SourcePoll, "relay source: poll (either database); wal (logical replication, table mode) or wal-logical (table-less messages) on postgres; binlog (the binary log) on mariadb")
	fs.DurationVar(&cfg.Duration, "duration", 20*time.Second, "length of the load and fault phase")
	fs.IntVar(&cfg.Messages, "messages", 0, "stop producing after this many messages (0: no limit); without --rate, sets the rate to messages/duration")
	fs.IntVar(&cfg.Rate, "rate", 0, "target messages per second (default 200, or messages/duration)")
	fs.IntVar(&cfg.Keys, "keys", 100, "ordering keys")
	fs.IntVar(&cfg.Producers, "producers", 8, "producer goroutines (each owns its keys)")
	fs.IntVar(&cfg.TxMessages, "tx-messages", 3, "most messages per transaction (each carries 1 to this many, evenly)")
	fs.IntVar(&cfg.Relays, "relays", 3, "`outbox relay` processes")
	fs.IntVar(&cfg.Consumers, "consumers", 0, "also run this many consumer processes (outbox-chaos-consumer: the sink's inbox adapter, effects applied through the inbox) and check the effects: none missing, none twice, each key's in order (0: none)")
	fs.DurationVar(&cfg.ConsumerKillInterval, "consumer-kill-interval", 3*time.Second, "mean pause between kill -9s of a consumer process (--consumers)")
	fs.StringVar(&cfg.ConsumerBinary, "consumer-bin", "", "the consumer program (default: go build ./chaos/cmd/outbox-chaos-consumer)")
	fs.BoolVar(&cfg.StableRelayIDs, "stable-relay-ids", false, "restart a killed relay under its old relay.id (default: a new id at every start, as in production)")
	fs.Float64Var(&cfg.RollbackRatio, "rollback-ratio", 0.05, "share of transactions rolled back on purpose")
	fs.IntVar(&cfg.PayloadBytes, "payload-bytes", 128, "payload size")
	fs.IntVar(&cfg.Hostile, "hostile", 0, "also write this many hostile rows per second with plain SQL (unreadable rows, reserved headers), each checked against its expected fate (0: none; poll source only)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "random seed for the workload and the fault schedule (0: from the clock)")
	fs.DurationVar(&cfg.KillInterval, "kill-interval", 2*time.Second, "mean pause between kill -9s of a relay")
	fs.DurationVar(&cfg.FaultInterval, "fault-interval", 2*time.Second, "mean pause between broker and database faults")
	fs.DurationVar(&cfg.MaxOutage, "max-outage", 2500*time.Millisecond, "longest outage of one fault")
	fs.StringVar(&faults, "faults", "", "only these fault kinds, comma-separated: relay-kill, broker-restart, broker-cut, db-cut, db-terminate, pg-restart, consumer-kill")
	fs.BoolVar(&cfg.PGRestart, "pg-restart", false, "also restart the PostgreSQL server itself (pg_ctlcluster VERSION main restart; --database postgres only); NEVER on a server others use")
	fs.StringVar(&pgRestart, "pg-restart-cmd", "", "command that restarts PostgreSQL, space-separated (default pg_ctlcluster <major> main restart)")
	fs.StringVar(&cfg.DatabaseURL, "database-url", "", "PostgreSQL server for --database postgres (default $OUTBOX_TEST_DATABASE_URL or postgres://postgres@127.0.0.1:5432/test); the run uses a schema of its own")
	fs.StringVar(&cfg.MySQLDSN, "mysql-dsn", "", "MariaDB server for --database mariadb, a go-sql-driver DSN over tcp (default $OUTBOX_TEST_MYSQL_DSN or root@tcp(127.0.0.1:3306)/test); the run creates a database and a relay user of its own")
	fs.StringVar(&cfg.RedisAddr, "redis-addr", "", "Redis server for --sink redis, host:port (default $OUTBOX_TEST_REDIS_ADDR or 127.0.0.1:6379)")
	fs.StringVar(&cfg.MQTTAddr, "mqtt-addr", "", "MQTT 5 broker for --sink mqtt, host:port (default the host of $MQTT_URL, else a Mosquitto of the run's own with max_queued_messages 0, else 127.0.0.1:1883)")
	fs.StringVar(&cfg.AMQPURL, "amqp-url", "", "RabbitMQ server for --sink rabbitmq (default $RABBITMQ_URL or amqp://guest:guest@127.0.0.1:5672/)")
	fs.StringVar(&cfg.OutboxBinary, "outbox-bin", "", "the outbox command to run as relays (default: go build ./cmd/outbox)")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "directory for relay logs and broker stores (default: a temporary one, removed after a clean run)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the work dir and the run's schema (postgres) or database (mariadb)")
	fs.Func("relay-env", "extra relay setting OUTBOX_NAME=value (repeatable), e.g. OUTBOX_RETENTION=1m", func(v string) error {
		cfg.RelayEnv = append(cfg.RelayEnv, v)
		return nil
	})
	fs.StringVar(&cfg.RelayLogLevel, "relay-log-level", "info", "the relays' log level")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 60*time.Second, "longest wait for the backlog after the faults")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON instead of text")
	fs.StringVar(&jsonOut, "json-out", "", "also write the JSON report to this file")
	fs.BoolVar(&verbose, "v", false, "log progress to stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "outbox-chaos: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if faults != "" {
		cfg.Faults = strings.Split(faults, ",")
	}
	if pgRestart != "" {
		cfg.PGRestartCommand = strings.Fields(pgRestart)
	}
	if verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}

	code := 0
	var reports []chaos.Report
	for _, s := range strings.Split(sinks, ",") {
		c := cfg
		c.Sink = strings.TrimSpace(s)
		if c.WorkDir != "" && strings.Contains(sinks, ",") {
			c.WorkDir += "/" + c.Sink
		}
		rep, err := chaos.Run(ctx, c)
		if err != nil {
			fmt.Fprintf(stderr, "outbox-chaos: %s: %v\n", c.Sink, err)
			if rep.Sink == "" {
				return 2 // invalid configuration
			}
			code = max(code, 3)
		}
		if !rep.OK() {
			code = max(code, 1)
		}
		reports = append(reports, rep)
		if !asJSON {
			rep.WriteText(stdout)
			fmt.Fprintln(stdout)
		}
	}
	var v any = reports
	if len(reports) == 1 {
		v = reports[0]
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			fmt.Fprintf(stderr, "outbox-chaos: %v\n", err)
			return max(code, 3)
		}
	}
	if jsonOut != "" {
		b, err := json.MarshalIndent(v, "", "  ")
		if err == nil {
			err = os.WriteFile(jsonOut, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintf(stderr, "outbox-chaos: %v\n", err)
			return max(code, 3)
		}
	}
	return code
}
