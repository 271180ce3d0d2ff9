package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/dialect/sqlite"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/relay/wal"
)

func (a *app) migrateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create, upgrade or remove the outbox tables",
		Long: `migrate manages the outbox tables (the outbox, its dead letters, relay membership and the
migrations record) with numbered migrations embedded in the binary. Concurrent runs are
safe: they take a lock.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown migrate command %q (want up, down or status)", args[0])
			}
			return usagef("migrate needs a subcommand: up, down or status")
		},
		RunE: func(*cobra.Command, []string) error { return nil },
	}
	var (
		steps      int
		all        bool
		inboxTable string
	)
	cmd.PersistentFlags().StringVar(&inboxTable, "inbox", "",
		"manage the consumer inbox tables named `TABLE` (package inbox: TABLE, TABLE_keys, TABLE_attempts, TABLE_dead) instead of the outbox's")
	// migrations runs fn with the outbox's migrator, or the inbox's with --inbox, and the name
	// of the tables it manages.
	migrations := func(cmd *cobra.Command, create bool, fn func(ctx context.Context, m dialect.Migrator, table string, cfg config.Config) error) error {
		return a.withMigrator(cmd, create, func(ctx context.Context, st dialect.Migrator, cfg config.Config) error {
			if inboxTable == "" {
				return fn(ctx, st, cfg.Table, cfg)
			}
			in, err := inboxMigrator(ctx, st, cfg, inboxTable)
			if err != nil {
				return err
			}
			return fn(ctx, in, inboxTable, cfg)
		})
	}
	up := &cobra.Command{
		Use:   "up",
		Short: "Apply every pending migration (idempotent)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return migrations(cmd, true, func(ctx context.Context, st dialect.Migrator, table string, cfg config.Config) error {
				applied, err := st.MigrateUp(ctx)
				if err != nil {
					return err
				}
				if len(applied) == 0 {
					fmt.Fprintf(a.stdout, "%s is up to date: nothing to apply\n", table)
				}
				for _, v := range applied {
					fmt.Fprintf(a.stdout, "applied migration %d\n", v)
				}
				if inboxTable != "" {
					return nil // an inbox has no log source to set up
				}
				switch cfg.Source {
				case config.SourceWAL:
					return a.setupSlot(ctx, cfg, st)
				case config.SourceBinlog:
					return a.setupBinlog(ctx, cfg, st)
				}
				return nil
			})
		},
	}
	up.Long = `up applies every pending migration; it is idempotent.

With --source wal it then creates the publication and the replication slot (--wal-slot) when
they are missing; with --source binlog it saves the server's current binlog position as the
source's starting point (--binlog-name) when none is saved: what the relay would do at its
first start. Do it before producers start writing: what commits before the slot exists, or
before the starting position, is not in the source's stream.`
	addSettingFlags(up.Flags(), "source", "wal.slot", "wal.mode", "wal.publication", "wal.message_prefix", "binlog.name")
	down := &cobra.Command{
		Use:   "down",
		Short: "Revert the most recent migrations (drops tables and their data)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if steps < 1 && !all {
				return usagef("--steps must be at least 1 (or use --all)")
			}
			if cmd.Flags().Changed("steps") && all {
				return usagef("use either --steps or --all")
			}
			n := steps
			if all {
				n = 0 // the store reverts everything
			}
			return migrations(cmd, false, func(ctx context.Context, st dialect.Migrator, table string, _ config.Config) error {
				reverted, err := st.MigrateDown(ctx, n)
				if errors.Is(err, dialect.ErrNoMigrations) {
					fmt.Fprintf(a.stdout, "%s: no migration applied: nothing to revert\n", table)
					return nil
				}
				if err != nil {
					return err
				}
				for _, v := range reverted {
					fmt.Fprintf(a.stdout, "reverted migration %d\n", v)
				}
				return nil
			})
		},
	}
	down.Flags().IntVar(&steps, "steps", 1, "how many migrations to revert")
	down.Flags().BoolVar(&all, "all", false, "revert every migration")
	status := &cobra.Command{
		Use:   "status",
		Short: "List the migrations and whether each is applied",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return migrations(cmd, false, func(ctx context.Context, st dialect.Migrator, _ string, _ config.Config) error {
				ms, err := st.MigrationStatus(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED")
				for _, m := range ms {
					applied := "no"
					if m.Applied {
						applied = m.AppliedAt.UTC().Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\n", m.Version, m.Name, applied)
				}
				return tw.Flush()
			})
		},
	}
	cmd.AddCommand(up, down, status)
	return cmd
}

// inboxMigrator returns the migrator of the inbox tables named table, in the database of
// st (the outbox's store, whose connections it borrows).
func inboxMigrator(ctx context.Context, st dialect.Migrator, _ config.Config, table string) (dialect.Migrator, error) {
	// Migrations concern the tables, not a consumer: the name only satisfies the config.
	in, err := openInbox(ctx, st, table, "outbox-migrate", "--inbox")
	if err != nil {
		return nil, err
	}
	return in, nil
}

// openInbox returns the inbox of consumer in the tables named table, in the database of st
// (the outbox's store, whose connections it borrows). flag names the table's flag in errors.
func openInbox(ctx context.Context, st any, table, consumer, flag string) (*inbox.Inbox, error) {
	icfg := inbox.Config{Table: table, Consumer: consumer}
	switch s := st.(type) {
	case *postgres.Store:
		icfg.Dialect, icfg.Pool = outbox.Postgres, s.Pool()
	case *mysql.Store:
		icfg.Dialect, icfg.DB = outbox.MySQL, s.DB()
	case *sqlite.Store:
		icfg.Dialect, icfg.DB = outbox.SQLite, s.DB()
	default:
		return nil, fmt.Errorf("%s: unsupported store %T", flag, st)
	}
	in, err := inbox.New(ctx, icfg)
	if err != nil {
		var ce *outbox.ConfigError
		switch {
		case errors.As(err, &ce) && ce.Field == "table":
			return nil, usagef("%s: %s", flag, ce.Reason)
		case errors.As(err, &ce) && ce.Field == "consumer":
			return nil, usagef("--consumer: %s", ce.Reason)
		}
		return nil, err
	}
	return in, nil
}

// setupSlot creates the WAL source's publication and replication slot when missing.
func (a *app) setupSlot(ctx context.Context, cfg config.Config, st dialect.Migrator) error {
	pg, ok := st.(*postgres.Store)
	if !ok {
		return &outbox.ConfigError{Field: "source", Reason: "wal needs a PostgreSQL database"}
	}
	db, err := cfg.Database()
	if err != nil {
		return err
	}
	src, err := wal.New(walConfig(cfg, db.URL, pg.Pool(), slog.New(slog.DiscardHandler)))
	if err != nil {
		return config.LibraryError("wal", "wal.", err)
	}
	if err := src.Setup(ctx); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "replication slot %s and its publication are ready\n", cfg.WAL.Slot)
	return nil
}
