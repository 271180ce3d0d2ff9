package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/relay/wal"
)

func (a *app) relayCmd() *cobra.Command {
	var migrate bool
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Publish committed outbox messages to the sink until stopped",
		Long: `relay publishes every committed outbox message to the configured sink, in order per key,
retrying failures with backoff and moving messages that exhaust relay.max_attempts to the
dead-letter table. A message is removed (or, with retention, marked) only after the sink
acknowledged it.

--source chooses how it finds the messages:
  poll    (default) claims batches from the outbox table; several relays may share one
          PostgreSQL or MariaDB table (they split the keys); with SQLite run one relay per
          file. PostgreSQL commits wake it at once (LISTEN/NOTIFY); SQLite commits within
          10 ms (PRAGMA data_version; at once for its own connections' commits).
  wal     PostgreSQL logical replication: tails the WAL through the slot --wal-slot (created
          when missing); --wal-mode logical reads table-less messages (EnqueueLogical).
  binlog  MariaDB binary log: reads the outbox table's row events, position kept in
          <table>_binlog.
With wal and binlog one relay reads at a time; more relays on the same slot (or binlog
name) wait as hot standbys and take over within seconds.

--topics limits a polling relay to some topics, so that each channel has relays of its own;
routes in the YAML file send topics to different sinks (see "Routing" in
docs/configuration.md).

--admin-addr serves the admin server: /metrics (Prometheus), /healthz, /readyz and the
JSON API (/api/v1/status, /api/v1/dead-letters...); --admin-token enables its mutating
endpoints, --admin-read-token guards the rest (docs/operations.md).

--tracing-endpoint exports a PRODUCER span "send {topic}" per publish call over OTLP
(--tracing-protocol http/protobuf or grpc), linked to each message's create span through its
traceparent header; tracing.headers (YAML only) are sent with every export, never logged
(see "Traces" in docs/configuration.md).

It exits 1 at start if the database is unreachable or the tables are missing (run
'outbox migrate up', or pass --migrate). Once running, it rides out database and broker
outages, retrying. SIGINT or SIGTERM stops it gracefully: in-flight batches get
relay.shutdown_timeout to finish, and it exits 0.`,
		Example: `  outbox relay --database-url postgres://app@db/app --sink-nats-url nats://nats:4222 --migrate
  OUTBOX_DATABASE_URL=sqlite:app.db outbox relay --sink-type stdout
  outbox relay --config relay.yaml --topics notify.sms      # only the SMS channel's messages
  OUTBOX_ADMIN_TOKEN=... outbox relay --admin-addr 127.0.0.1:9090 --admin-max-lag 1m
  outbox relay --database-url postgres://relay@db/app --source wal --wal-slot outbox_app
  outbox relay --database-url mysql://relay:pw@db:3306/app --source binlog
  OUTBOX_SINK_KAFKA_SASL_PASSWORD=... outbox relay --sink-type kafka --sink-kafka-brokers k1:9092,k2:9092
  outbox relay --config relay.yaml --tracing-endpoint https://otel-collector:4318 --tracing-sample-ratio 0.1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig(cmd)
			if err != nil {
				return err
			}
			return a.runRelay(cmd.Context(), cfg, migrate)
		},
	}
	cmd.Flags().BoolVar(&migrate, "migrate", false, "apply pending migrations before relaying")
	addSettingFlags(cmd.Flags(), relaySettings()...)
	return cmd
}

func (a *app) runRelay(ctx context.Context, cfg config.Config, migrate bool) error {
	logger := newLogger(cfg.Log, a.stderr)
	// go-redis logs through a process-wide logger of its own: send its lines to ours.
	redis.SetLogger(redisLogger{logger: logger})
	st, err := openStore(ctx, cfg, logger, migrate)
	if err != nil {
		return err
	}
	defer st.Close()
	if migrate {
		applied, err := st.MigrateUp(ctx)
		if err != nil {
			return fmt.Errorf("migrating: %w", err)
		}
		logger.Info("migrations applied", slog.Any("versions", applied))
	}
	// Fail fast when the database is unreachable or the tables are missing: a supervisor
	// restarting the relay says more than a log line repeated forever.
	stats, err := st.Stats(ctx)
	if err != nil {
		return withMigrateHint(fmt.Errorf("checking the outbox: %w", err))
	}
	src, srcAttrs, err := newSource(ctx, cfg, st, logger)
	if err != nil {
		return err
	}
	snk, err := newRelaySink(ctx, cfg, logger, a.stdout)
	if err != nil {
		return err
	}
	defer snk.Close()
	tp, err := newTracerProvider(ctx, cfg.Tracing, buildVersion(), logger)
	if err != nil {
		return err
	}
	defer shutdownTracerProvider(tp, logger)
	ops, err := newOps(ctx, cfg, st, snk, logger)
	if err != nil {
		return err
	}
	rc := cfg.RelayConfig()
	rc.Source, rc.Sink, rc.Logger, rc.SinkName = src, snk, logger, sinkSummary(cfg)
	if p, ok := st.(dialect.Pauser); ok {
		rc.Pauses = p // operator pauses ('outbox pause', the admin API)
	}
	if ops != nil {
		rc.Hooks = append(rc.Hooks, ops.hook())
	}
	if tp != nil {
		rc.Hooks = append(rc.Hooks, relayTracingHook(cfg, tp))
	}
	r, err := relay.New(rc)
	if err != nil {
		if ops != nil {
			_ = ops.listener.Close()
		}
		return config.LibraryError("relay", "relay.", err)
	}
	db, _ := cfg.Database()
	attrs := append([]any{
		slog.String("source", cfg.Source),
		slog.String("dialect", string(db.Dialect)),
		slog.String("table", cfg.Table),
		slog.String("sink", sinkSummary(cfg)),
	}, srcAttrs...)
	if tp != nil {
		attrs = append(attrs, slog.String("tracing", cfg.Tracing.Protocol+" "+config.RedactURL(string(cfg.Tracing.Endpoint))))
	}
	logger.Info("relay started", append(attrs,
		slog.Int64("pending", stats.Pending),
		slog.Int64("dead_letters", stats.DeadLetters))...)
	if ops == nil {
		if err := r.Run(ctx); err != nil {
			return withMigrateHint(err)
		}
		logger.Info("relay stopped")
		return nil
	}
	// The admin server runs as long as the relay; if it fails, the relay stops too.
	actx, stopAdmin := context.WithCancel(ctx)
	adminErr := make(chan error, 1)
	rctx, stopRelay := context.WithCancel(ctx)
	defer stopRelay()
	go func() {
		err := ops.run(actx, st, r, src)
		if err != nil {
			logger.Error("admin server failed; stopping the relay", slog.Any("error", err))
			stopRelay()
		}
		adminErr <- err
	}()
	runErr := r.Run(rctx)
	stopAdmin()
	if err := <-adminErr; err != nil && runErr == nil {
		runErr = err
	}
	if runErr != nil {
		return withMigrateHint(runErr)
	}
	logger.Info("relay stopped")
	return nil
}

// newSource builds the configured source over the open store, and the attributes that
// describe it in the start-up log line.
func newSource(ctx context.Context, cfg config.Config, st dialect.Store, logger *slog.Logger) (relay.Source, []any, error) {
	switch cfg.Source {
	case config.SourceWAL:
		pg, ok := st.(*postgres.Store)
		if !ok {
			return nil, nil, &outbox.ConfigError{Field: "source", Reason: "wal needs a PostgreSQL database"}
		}
		db, err := cfg.Database()
		if err != nil {
			return nil, nil, err
		}
		src, err := wal.New(walConfig(cfg, db.URL, pg.Pool(), logger))
		if err != nil {
			return nil, nil, config.LibraryError("wal", "wal.", err)
		}
		return src, []any{slog.String("slot", cfg.WAL.Slot), slog.String("mode", cfg.WAL.Mode), slog.Int("workers", cfg.WAL.Workers)}, nil
	case config.SourceBinlog:
		return newBinlogSource(cfg, st, logger)
	default:
		pc := cfg.PollConfig()
		pc.Store, pc.Logger = st, logger
		src, err := poll.New(pc)
		if err != nil {
			return nil, nil, config.LibraryError("poll", "poll.", err)
		}
		return src, []any{slog.String("relay_id", src.RelayID()), slog.Any("topics", cfg.Topics), slog.Int("workers", cfg.Poll.Workers)}, nil
	}
}

// walConfig is the WAL source's configuration, on the connections url and pool.
func walConfig(cfg config.Config, url string, pool *pgxpool.Pool, logger *slog.Logger) wal.Config {
	c := cfg.WALConfig()
	c.ConnString, c.Pool, c.Logger = url, pool, logger
	return c
}
