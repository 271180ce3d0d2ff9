package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/inbox"
)

// inboxCmd is 'outbox inbox dead list|retry|purge': the dead letters of a consumer's inbox
// (package inbox), in the configured database.
func (a *app) inboxCmd() *cobra.Command {
	var table, consumer string
	cmd := &cobra.Command{
		Use:   "inbox",
		Short: "Manage a consumer inbox (package inbox): its dead letters",
		Long: `A consumer that applies messages through package inbox keeps, in its own database, the ids
it processed and the messages whose handler failed max_attempts times or that it could not
read (TABLE_dead). 'outbox inbox dead' lists, retries and purges them, like 'outbox dlq' for
the outbox: the database is the one the configuration names (database.url), the tables
those named by --table, the consumer the one named by --consumer. Create the tables with
'outbox migrate up --inbox TABLE'.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown inbox command %q (want dead)", args[0])
			}
			return usagef("inbox needs a subcommand: dead")
		},
		RunE: func(*cobra.Command, []string) error { return nil },
	}
	cmd.PersistentFlags().StringVar(&table, "table", inbox.DefaultTable, "the inbox's processed-ids `TABLE` (its dead letters are in TABLE_dead)")
	cmd.PersistentFlags().StringVar(&consumer, "consumer", "", "the consumer `NAME` (inbox.Config.Consumer); required")
	with := func(cmd *cobra.Command, fn func(ctx context.Context, in *inbox.Inbox) error) error {
		if consumer == "" {
			return usagef("%s needs --consumer (the inbox.Config.Consumer of the consumer whose dead letters these are)", cmd.CommandPath())
		}
		return a.withStore(cmd, func(ctx context.Context, st dialect.Store, _ config.Config) error {
			in, err := openInbox(ctx, st, table, consumer, "--table")
			if err != nil {
				return err
			}
			err = fn(ctx, in)
			if err != nil {
				err = withInboxMigrateHint(err, table)
			}
			return err
		})
	}
	dead := &cobra.Command{
		Use:   "dead",
		Short: "List, retry or purge a consumer's dead letters",
		Long: `A consumer's dead letters are the messages its handler failed on max_attempts times, or that
it could not read. 'retry' marks them for one more try, which the running consumer makes with
its handler within a few seconds (its adapter's Run redrives marked letters; a letter that
fails again comes back with the new error); 'purge' deletes them (their ids stay processed,
so redeliveries remain duplicates).`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown inbox dead command %q (want list, retry or purge)", args[0])
			}
			return usagef("inbox dead needs a subcommand: list, retry or purge")
		},
		RunE: func(*cobra.Command, []string) error { return nil },
	}
	dead.AddCommand(a.inboxDeadListCmd(with), a.inboxDeadMoveCmd("retry", with), a.inboxDeadMoveCmd("purge", with))
	cmd.AddCommand(dead)
	return cmd
}

// withInboxMigrateHint is withMigrateHint with the inbox's migrate command.
func withInboxMigrateHint(err error, table string) error {
	if missingTables(err) {
		return fmt.Errorf("%w (have the inbox tables been created? run 'outbox migrate up --inbox %s')", err, table)
	}
	return err
}

// inboxDeadJSON is one dead letter in 'inbox dead list --json'. Payload is base64.
type inboxDeadJSON struct {
	ID        int64             `json:"id"`
	MessageID string            `json:"message_id"`
	Topic     string            `json:"topic"`
	Type      string            `json:"type"`
	Source    string            `json:"source"`
	Key       string            `json:"key,omitempty"`
	Position  int64             `json:"position,omitempty"`
	Time      *time.Time        `json:"time,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	Payload   []byte            `json:"payload"`
	Attempts  int               `json:"attempts"`
	LastError string            `json:"last_error"`
	DeadAt    time.Time         `json:"dead_at"`
}

type inboxRunner func(cmd *cobra.Command, fn func(ctx context.Context, in *inbox.Inbox) error) error

func (a *app) inboxDeadListCmd(with inboxRunner) *cobra.Command {
	var (
		limit  int
		after  int64
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List a consumer's dead letters in id order",
		Example: `  outbox inbox dead list --consumer billing
  outbox inbox dead list --consumer billing --table shop.inbox --json | jq -r '.[].message_id'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 10000 {
				return usagef("--limit must be between 1 and 10000")
			}
			if after < 0 {
				return usagef("--after must not be negative")
			}
			return with(cmd, func(ctx context.Context, in *inbox.Inbox) error {
				dls, err := in.DeadLetters(ctx, after, limit)
				if err != nil {
					return err
				}
				if asJSON {
					out := make([]inboxDeadJSON, 0, len(dls))
					for _, d := range dls {
						m := d.Message
						j := inboxDeadJSON{ID: d.ID, MessageID: m.ID, Topic: m.Topic, Type: m.Type, Source: m.Source, Key: m.Key,
							Position: m.Position, Headers: m.Headers, Payload: m.Payload, Attempts: d.Attempts,
							LastError: config.Redact(d.Error), DeadAt: d.DeadAt.UTC()}
						if !m.Time.IsZero() {
							t := m.Time.UTC()
							j.Time = &t
						}
						out = append(out, j)
					}
					enc := json.NewEncoder(a.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(out)
				}
				if len(dls) == 0 {
					fmt.Fprintln(a.stdout, "no dead letters")
					return nil
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tMESSAGE ID\tTOPIC\tKEY\tATTEMPTS\tDEAD AT\tLAST ERROR")
				for _, d := range dls {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, oneLine(d.Message.ID, 40), oneLine(d.Message.Topic, 40),
						oneLine(d.Message.Key, 30), d.Attempts, d.DeadAt.UTC().Format(time.RFC3339), oneLine(config.Redact(d.Error), 80))
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				if len(dls) == limit {
					fmt.Fprintf(a.stdout, "(more may follow: --after %d)\n", dls[len(dls)-1].ID)
				}
				return nil
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "most dead letters to list")
	cmd.Flags().Int64Var(&after, "after", 0, "list dead letters with an id greater than this")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (payloads base64-encoded)")
	return cmd
}

// inboxDeadMoveCmd is 'inbox dead retry' or 'inbox dead purge'.
func (a *app) inboxDeadMoveCmd(verb string, with inboxRunner) *cobra.Command {
	var all bool
	short := "Mark dead letters for one more try by the running consumer"
	done := "marked %d dead letter(s) for retry: the consumer applies them within its redrive interval\n"
	if verb == "purge" {
		short = "Delete dead letters for good"
		done = "deleted %d dead letter(s)\n"
	}
	cmd := &cobra.Command{
		Use:     verb + " [ID...] | --all",
		Short:   short,
		Example: fmt.Sprintf("  outbox inbox dead %s --consumer billing 12 13\n  outbox inbox dead %s --consumer billing --all", verb, verb),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 && !all {
				return usagef("inbox dead %s needs dead-letter ids (see 'outbox inbox dead list') or --all", verb)
			}
			if len(args) > 0 && all {
				return usagef("inbox dead %s takes either ids or --all, not both", verb)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ids := make([]int64, 0, len(args))
			seen := map[int64]bool{}
			for _, arg := range args {
				id, err := strconv.ParseInt(arg, 10, 64)
				if err != nil || id < 1 {
					return usagef("%q is not a dead-letter id (a positive integer)", arg)
				}
				if !seen[id] {
					seen[id] = true
					ids = append(ids, id)
				}
			}
			return with(cmd, func(ctx context.Context, in *inbox.Inbox) error {
				if all {
					var err error
					if ids, err = allDeadIDs(ctx, in); err != nil {
						return err
					}
				}
				var n int64
				if verb == "purge" {
					var err error
					if n, err = in.PurgeDeadLetters(ctx, ids); err != nil {
						return err
					}
				} else {
					marked, err := in.RetryDeadLetters(ctx, ids)
					if err != nil {
						return err
					}
					n = int64(len(marked))
				}
				fmt.Fprintf(a.stdout, done, n)
				if !all && int(n) < len(ids) {
					return &exitError{code: exitFailure, msg: fmt.Sprintf("%d of the %d ids named are not dead letters of consumer %s waiting for a retry (see 'outbox inbox dead list')",
						len(ids)-int(n), len(ids), oneLine(in.Consumer(), 200))}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every dead letter of the consumer")
	return cmd
}

// allDeadIDs returns the ids of every dead letter of in that is not marked for retry.
func allDeadIDs(ctx context.Context, in *inbox.Inbox) ([]int64, error) {
	var ids []int64
	var after int64
	for {
		page, err := in.DeadLetters(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		for _, d := range page {
			ids = append(ids, d.ID)
		}
		if len(page) < 1000 {
			return ids, nil
		}
		after = page[len(page)-1].ID
	}
}
