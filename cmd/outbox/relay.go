package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/outboxgo/outbox/internal/config"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
)

func (a *app) relayCmd() *cobra.Command {
	var migrate bool
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Publish committed outbox messages to the sink until stopped",
		Long: `relay polls the outbox table and publishes every committed message to the configured sink,
in order per key, retrying failures with backoff and moving messages that exhaust
relay.max_attempts to the dead-letter table. A message is removed (or, with retention,
marked) only after the sink acknowledged it.

Several relays may share one PostgreSQL table: they split the keys between them. With SQLite,
run one relay per database file. --topics limits a relay to some topics, so that each channel
has relays of its own; routes in the YAML file send topics to different sinks (see "Routing"
in docs/configuration.md).

It exits 1 at start if the database is unreachable or the tables are missing (run
'outbox migrate up', or pass --migrate). Once running, it rides out database and broker
outages, retrying. SIGINT or SIGTERM stops it gracefully: in-flight batches get
relay.shutdown_timeout to finish, and it exits 0.`,
		Example: `  outbox relay --database-url postgres://app@db/app --sink-nats-url nats://nats:4222 --migrate
  OUTBOX_DATABASE_URL=sqlite:app.db outbox relay --sink-type stdout
  outbox relay --config relay.yaml --topics notify.sms      # only the SMS channel's messages
  OUTBOX_SINK_KAFKA_SASL_PASSWORD=... outbox relay --sink-type kafka --sink-kafka-brokers k1:9092,k2:9092`,
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
	src, err := poll.New(poll.Config{
		Store:         st,
		BatchSize:     cfg.Poll.BatchSize,
		MaxBatchBytes: cfg.Poll.MaxBatchBytes,
		PollInterval:  cfg.Poll.Interval,
		Workers:       cfg.Poll.Workers,
		RelayID:       cfg.Relay.ID,
		Topics:        cfg.Topics,
		Retention:     cfg.Retention,
		DisableNotify: !cfg.Poll.Notify,
		Logger:        logger,
	})
	if err != nil {
		return err
	}
	snk, err := newRelaySink(ctx, cfg, logger, a.stdout)
	if err != nil {
		return err
	}
	defer snk.Close()
	r, err := relay.New(relay.Config{
		Source:          src,
		Sink:            snk,
		MaxAttempts:     cfg.Relay.MaxAttempts,
		BackoffBase:     cfg.Relay.BackoffBase,
		BackoffMax:      cfg.Relay.BackoffMax,
		PublishTimeout:  cfg.Relay.PublishTimeout,
		BatchTimeout:    cfg.Relay.BatchTimeout,
		ShutdownTimeout: cfg.Relay.ShutdownTimeout,
		Logger:          logger,
	})
	if err != nil {
		return err
	}
	db, _ := cfg.Database()
	logger.Info("relay started",
		slog.String("relay_id", src.RelayID()),
		slog.String("dialect", string(db.Dialect)),
		slog.String("table", cfg.Table),
		slog.String("sink", sinkSummary(cfg)),
		slog.Any("topics", cfg.Topics),
		slog.Int("workers", cfg.Poll.Workers),
		slog.Int64("pending", stats.Pending),
		slog.Int64("dead_letters", stats.DeadLetters))
	if err := r.Run(ctx); err != nil {
		return withMigrateHint(err)
	}
	logger.Info("relay stopped")
	return nil
}
