package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/config"
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
		steps int
		all   bool
	)
	up := &cobra.Command{
		Use:   "up",
		Short: "Apply every pending migration (idempotent)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStoreCreate(cmd, true, func(ctx context.Context, st dialect.Store, cfg config.Config) error {
				applied, err := st.MigrateUp(ctx)
				if err != nil {
					return err
				}
				if len(applied) == 0 {
					fmt.Fprintf(a.stdout, "%s is up to date: nothing to apply\n", cfg.Table)
					return nil
				}
				for _, v := range applied {
					fmt.Fprintf(a.stdout, "applied migration %d\n", v)
				}
				return nil
			})
		},
	}
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
			return a.withStore(cmd, func(ctx context.Context, st dialect.Store, cfg config.Config) error {
				reverted, err := st.MigrateDown(ctx, n)
				if errors.Is(err, dialect.ErrNoMigrations) {
					fmt.Fprintf(a.stdout, "%s: no migration applied: nothing to revert\n", cfg.Table)
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
			return a.withStore(cmd, func(ctx context.Context, st dialect.Store, _ config.Config) error {
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
