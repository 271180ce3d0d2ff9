package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/config"
)

// statusJSON is the machine-readable form of outbox status.
type statusJSON struct {
	Dialect              string  `json:"dialect"`
	Table                string  `json:"table"`
	Pending              int64   `json:"pending"`
	Ready                int64   `json:"ready"`
	Retrying             int64   `json:"retrying"`
	OldestPendingSeconds float64 `json:"oldest_pending_seconds"`
	DeadLetters          int64   `json:"dead_letters"`
	LiveRelays           int     `json:"live_relays"`
}

func (a *app) statusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the backlog, its oldest message, dead letters and live relays",
		Long: `status summarises the outbox:
  pending         messages committed and not yet published
    ready         of which may be published now
    retrying      of which failed at least once (and may be waiting for their backoff)
  oldest pending  age of the oldest unpublished message: the relay's lag
  dead letters    messages that failed permanently or exhausted relay.max_attempts
  live relays     relays that sent a heartbeat in the last minute`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd, func(ctx context.Context, st dialect.Store, cfg config.Config) error {
				s, err := st.Stats(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(a.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(statusJSON{
						Dialect:              string(st.Dialect()),
						Table:                cfg.Table,
						Pending:              s.Pending,
						Ready:                s.Ready,
						Retrying:             s.Retrying,
						OldestPendingSeconds: s.OldestPending.Seconds(),
						DeadLetters:          s.DeadLetters,
						LiveRelays:           s.Relays,
					})
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "table\t%s (%s)\n", cfg.Table, st.Dialect())
				fmt.Fprintf(tw, "pending\t%d\n", s.Pending)
				fmt.Fprintf(tw, "  ready\t%d\n", s.Ready)
				fmt.Fprintf(tw, "  retrying\t%d\n", s.Retrying)
				fmt.Fprintf(tw, "oldest pending\t%s\n", age(s.OldestPending))
				fmt.Fprintf(tw, "dead letters\t%d\n", s.DeadLetters)
				fmt.Fprintf(tw, "live relays\t%d\n", s.Relays)
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// age formats a duration for people: "-" for none, else rounded to a sensible unit.
func age(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
