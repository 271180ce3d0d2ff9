package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/dialect"
)

const pauseLong = `An operator pause holds messages without dropping them: every relay of the table reads the
pauses every relay.pause_interval (2s by default) and stops publishing the messages of a
paused topic, or those routed to a paused sink, until it is resumed. Held messages keep their
attempts and backoff, the other topics and sinks flow, and per-key order holds (a later
message of the same key waits too, on any topic). A pause is not an outage: /readyz stays
ready. Resume with 'outbox resume'. The pauses are kept in the database (the table's
_pauses table, created by 'outbox migrate up').`

// pauseCmd is 'outbox pause topic|sink NAME' and 'outbox pause list'.
func (a *app) pauseCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pause",
		Short: "Pause a topic or a sink on every relay, or list the pauses",
		Long:  pauseLong,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown pause command %q (want topic, sink or list)", args[0])
			}
			return usagef("pause needs a subcommand: topic, sink or list")
		},
		RunE: func(*cobra.Command, []string) error { return nil },
	}
	cmd.AddCommand(a.pauseKindCmd(dialect.PauseTopic), a.pauseKindCmd(dialect.PauseSink), a.pauseListCmd())
	return cmd
}

// resumeCmd is 'outbox resume topic|sink NAME'.
func (a *app) resumeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "resume",
		Short: "Resume a paused topic or sink",
		Long:  "Removes an operator pause (see 'outbox pause --help'): every relay publishes the held messages\nagain within its pause interval, in per-key order.",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown resume command %q (want topic or sink)", args[0])
			}
			return usagef("resume needs a subcommand: topic or sink")
		},
		RunE: func(*cobra.Command, []string) error { return nil },
	}
	cmd.AddCommand(a.resumeKindCmd(dialect.PauseTopic), a.resumeKindCmd(dialect.PauseSink))
	return cmd
}

// withPauser is withStore for the pause commands: they need the store's dialect.Pauser.
func (a *app) withPauser(cmd *cobra.Command, fn func(ctx context.Context, p dialect.Pauser) error) error {
	return a.withStore(cmd, func(ctx context.Context, st dialect.Store, _ config.Config) error {
		p, ok := st.(dialect.Pauser)
		if !ok {
			return fmt.Errorf("this database's store keeps no pauses")
		}
		err := fn(ctx, p)
		if errors.Is(err, dialect.ErrNoPausesTable) {
			return fmt.Errorf("%w: run 'outbox migrate up'", err)
		}
		return err
	})
}

// nameArg checks the one NAME argument of the pause and resume commands.
func nameArg(kind dialect.PauseKind, verb string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		switch {
		case len(args) != 1:
			return usagef("%s %s needs one %s name, got %d arguments", verb, kind, kind, len(args))
		case args[0] == "":
			return usagef("the %s name must not be empty", kind)
		}
		return nil
	}
}

// pausedBy names who runs the command, for the pause's paused_by.
func pausedBy() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	return "outbox CLI, " + cmp.Or(name, "unknown user") + "@" + cmp.Or(host, "unknown host")
}

func (a *app) pauseKindCmd(kind dialect.PauseKind) *cobra.Command {
	var reason string
	what := "the messages of topic NAME"
	if kind == dialect.PauseSink {
		what = "the messages routed to sink NAME (a route's name, or the one sink's name)"
	}
	cmd := &cobra.Command{
		Use:     string(kind) + " NAME [--reason TEXT]",
		Short:   "Hold " + what + " on every relay until resumed",
		Long:    pauseLong,
		Example: fmt.Sprintf("  outbox pause %s orders.created --reason 'consumer deploy'", kind),
		Args:    nameArg(kind, "pause"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := dialect.Pause{Kind: kind, Name: args[0], Reason: reason, PausedBy: pausedBy()}
			if err := p.Validate(); err != nil {
				return &usageError{err: err}
			}
			return a.withPauser(cmd, func(ctx context.Context, pr dialect.Pauser) error {
				err := pr.Pause(ctx, p)
				if errors.Is(err, dialect.ErrAlreadyPaused) {
					return &exitError{code: exitFailure, msg: fmt.Sprintf("%s %q is paused already (see 'outbox pause list')", kind, p.Name)}
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "paused %s %q: the relays hold its messages within their pause interval\n", kind, p.Name)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the operators who see the pause")
	return cmd
}

func (a *app) resumeKindCmd(kind dialect.PauseKind) *cobra.Command {
	return &cobra.Command{
		Use:     string(kind) + " NAME",
		Short:   "Resume a paused " + string(kind),
		Example: fmt.Sprintf("  outbox resume %s orders.created", kind),
		Args:    nameArg(kind, "resume"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withPauser(cmd, func(ctx context.Context, pr dialect.Pauser) error {
				err := pr.Resume(ctx, kind, args[0])
				if errors.Is(err, dialect.ErrNotPaused) {
					return &exitError{code: exitFailure, msg: fmt.Sprintf("%s %q is not paused (see 'outbox pause list')", kind, args[0])}
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "resumed %s %q: the relays publish its messages again within their pause interval\n", kind, args[0])
				return nil
			})
		},
	}
}

// pauseJSON is one pause in 'pause list --json'.
type pauseJSON struct {
	Kind     string    `json:"kind"`
	Name     string    `json:"name"`
	Reason   string    `json:"reason"`
	PausedBy string    `json:"paused_by"`
	Since    time.Time `json:"since"`
}

// pausesJSON is ps in the JSON form of pause list and status (an empty list, not null).
func pausesJSON(ps []dialect.Pause) []pauseJSON {
	out := make([]pauseJSON, 0, len(ps))
	for _, p := range ps {
		out = append(out, pauseJSON{Kind: string(p.Kind), Name: p.Name, Reason: p.Reason, PausedBy: p.PausedBy, Since: p.PausedAt.UTC()})
	}
	return out
}

func (a *app) pauseListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the operator pauses",
		Example: "  outbox pause list\n  outbox pause list --json | jq -r '.[] | select(.kind == \"topic\") | .name'",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withPauser(cmd, func(ctx context.Context, pr dialect.Pauser) error {
				ps, err := pr.ListPauses(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(a.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(pausesJSON(ps))
				}
				if len(ps) == 0 {
					fmt.Fprintln(a.stdout, "nothing is paused")
					return nil
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KIND\tNAME\tSINCE\tBY\tREASON")
				for _, p := range ps {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Kind, oneLine(p.Name, 60), p.PausedAt.UTC().Format(time.RFC3339),
						oneLine(p.PausedBy, 40), oneLine(p.Reason, 80))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
