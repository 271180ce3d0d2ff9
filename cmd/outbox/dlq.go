package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/dialect"
)

func (a *app) dlqCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List, retry or purge dead letters",
		Long: `A message lands in the dead-letter table when its sink rejects it permanently or after
relay.max_attempts failed attempts, with its last error. Inspect them with 'dlq list', put
them back into the outbox with 'dlq retry' (they are published again, after the messages
already waiting), or delete them with 'dlq purge'.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown dlq command %q (want list, retry or purge)", args[0])
			}
			return usagef("dlq needs a subcommand: list, retry or purge")
		},
		RunE: func(*cobra.Command, []string) error { return nil },
	}
	cmd.AddCommand(a.dlqListCmd(), a.dlqMoveCmd("retry"), a.dlqMoveCmd("purge"))
	return cmd
}

// deadLetterJSON is one dead letter in 'dlq list --json'. Payload is base64 (JSON []byte).
type deadLetterJSON struct {
	ID        int64             `json:"id"`
	Seq       int64             `json:"original_id"`
	MessageID string            `json:"message_id"`
	Topic     string            `json:"topic"`
	Key       string            `json:"key,omitempty"`
	Type      string            `json:"type"`
	Headers   map[string]string `json:"headers,omitempty"`
	Payload   []byte            `json:"payload"`
	CreatedAt time.Time         `json:"created_at"`
	Attempts  int               `json:"attempts"`
	LastError string            `json:"last_error"`
	FailedAt  time.Time         `json:"failed_at"`
}

func (a *app) dlqListCmd() *cobra.Command {
	var (
		limit  int
		after  int64
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead letters in id order",
		Example: `  outbox dlq list --limit 20
  outbox dlq list --after 120 --json | jq -r '.[].message_id'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 || limit > 10000 {
				return usagef("--limit must be between 1 and 10000")
			}
			if after < 0 {
				return usagef("--after must not be negative")
			}
			return a.withAdmin(cmd, func(ctx context.Context, st dialect.Admin, _ config.Config) error {
				dls, err := st.DeadLetters(ctx, after, limit)
				if err != nil {
					return err
				}
				if asJSON {
					out := make([]deadLetterJSON, 0, len(dls))
					for _, d := range dls {
						r := d.Record
						out = append(out, deadLetterJSON{
							ID: d.ID, Seq: r.Seq, MessageID: r.ID.String(), Topic: r.Topic, Key: r.Key,
							Type: r.EventType(), Headers: r.Headers, Payload: r.Payload, CreatedAt: r.CreatedAt.UTC(),
							Attempts: r.Attempts, LastError: config.Redact(d.LastError), FailedAt: d.FailedAt.UTC(),
						})
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
				fmt.Fprintln(tw, "ID\tMESSAGE ID\tTOPIC\tKEY\tATTEMPTS\tFAILED AT\tLAST ERROR")
				for _, d := range dls {
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Record.ID, oneLine(d.Record.Topic, 40),
						oneLine(d.Record.Key, 30), d.Record.Attempts, d.FailedAt.UTC().Format(time.RFC3339), oneLine(config.Redact(d.LastError), 80))
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

// dlqBatch is how many dead letters 'dlq retry --all' and 'dlq purge --all' move or delete
// per transaction.
const dlqBatch = 5000

// dlqIDPage is how many dead letters at a time 'dlq retry --all' and 'dlq purge --all' list
// the ids of (dialect.DeadLetterIDLister: the ids alone), and dlqScanPage how many they read
// from a store that lists only whole dead letters, payloads included.
const (
	dlqIDPage   = 10000
	dlqScanPage = 500
)

// dlqMoveCmd is 'dlq retry' or 'dlq purge'.
func (a *app) dlqMoveCmd(verb string) *cobra.Command {
	var all, noProgress bool
	short := "Move dead letters back into the outbox to be published again"
	done := "moved %d dead letter(s) back into the outbox\n"
	past := "moved back into the outbox"
	if verb == "purge" {
		short = "Delete dead letters for good"
		done = "deleted %d dead letter(s)\n"
		past = "deleted"
	}
	cmd := &cobra.Command{
		Use:   verb + " [ID...] | --all",
		Short: short,
		Long: fmt.Sprintf(`With ids, 'dlq %[1]s' works on those dead letters, in one transaction. With --all it
works on the dead letters there are when it starts, %[2]d per transaction, with a progress
bar on standard error (plain lines when it is not a terminal; --no-progress for none). When
it fails midway, the batches done stay done, the others are intact: the error says how many
were done, and running the command again finishes the job.`, verb, dlqBatch),
		Example: fmt.Sprintf("  outbox dlq %s 12 13 14\n  outbox dlq %s --all", verb, verb),
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 && !all {
				return usagef("dlq %s needs dead-letter ids (see 'outbox dlq list') or --all", verb)
			}
			if len(args) > 0 && all {
				return usagef("dlq %s takes either ids or --all, not both", verb)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var ids []int64 // nil means all
			if !all {
				ids = make([]int64, 0, len(args))
				for _, arg := range args {
					id, err := strconv.ParseInt(arg, 10, 64)
					if err != nil || id < 1 {
						return usagef("%q is not a dead-letter id (a positive integer)", arg)
					}
					ids = append(ids, id)
				}
			}
			return a.withAdmin(cmd, func(ctx context.Context, st dialect.Admin, _ config.Config) error {
				move := st.RetryDeadLetters
				if verb == "purge" {
					move = st.PurgeDeadLetters
				}
				if all {
					n, err := a.moveAllDeadLetters(ctx, st, move, "dlq "+verb, noProgress)
					if err != nil {
						return fmt.Errorf("%w (%d dead letter(s) %s before the error, the others are intact: run 'outbox dlq %s --all' again to finish)", err, n, past, verb)
					}
					fmt.Fprintf(a.stdout, done, n)
					return nil
				}
				ids, missing, err := splitDeadLetters(ctx, st, ids)
				if err != nil {
					return err
				}
				var n int64
				if len(ids) > 0 { // none found: nothing to move (nil would mean all)
					if n, err = move(ctx, ids); err != nil {
						return err
					}
				}
				fmt.Fprintf(a.stdout, done, n)
				if int(n) < len(ids) {
					// Gone between the look-up and the move: another dlq command took them.
					fmt.Fprintf(a.stderr, "outbox: %d of the dead letters found were gone when %s ran (another command took them)\n", len(ids)-int(n), verb)
				}
				if len(missing) > 0 {
					return &exitError{code: exitFailure, msg: fmt.Sprintf("no dead letter with id %s (see 'outbox dlq list')", joinIDs(missing))}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "every dead letter")
	cmd.Flags().BoolVar(&noProgress, "no-progress", false, "with --all, report no progress on standard error")
	return cmd
}

// moveAllDeadLetters retries or purges (move) the dead letters there are when it starts,
// dlqBatch per call of move (one transaction each), reporting progress under label. Dead
// letters added meanwhile (a retried message that fails again, say) are left for the next
// run. It returns how many were moved, also on error.
func (a *app) moveAllDeadLetters(ctx context.Context, st dialect.Admin, move func(context.Context, []int64) (int64, error), label string, noProgress bool) (int64, error) {
	size := dlqScanPage
	if _, ok := st.(dialect.DeadLetterIDLister); ok {
		size = dlqIDPage
	}
	var ids []int64
	for after := int64(0); ; {
		page, err := deadLetterIDs(ctx, st, after, size)
		if err != nil {
			return 0, err
		}
		ids = append(ids, page...)
		if len(page) < size {
			break
		}
		after = page[len(page)-1]
	}
	if len(ids) == 0 {
		return 0, nil
	}
	p := a.progress(noProgress, label, int64(len(ids)))
	defer p.Finish()
	var done int64
	for len(ids) > 0 {
		batch := ids[:min(dlqBatch, len(ids))]
		ids = ids[len(batch):]
		n, err := move(ctx, batch)
		if err != nil {
			return done, err
		}
		done += n
		p.Add(n)
	}
	return done, nil
}

// splitDeadLetters splits ids into those of existing dead letters and the missing ones, in
// the order given (duplicates once).
func splitDeadLetters(ctx context.Context, st dialect.Admin, ids []int64) (found, missing []int64, err error) {
	seen := make(map[int64]bool, len(ids))
	found = make([]int64, 0, len(ids))
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		// The first dead letter after id-1 is id itself when it exists.
		next, err := deadLetterIDs(ctx, st, id-1, 1)
		if err != nil {
			return nil, nil, err
		}
		if len(next) == 1 && next[0] == id {
			found = append(found, id)
		} else {
			missing = append(missing, id)
		}
	}
	return found, missing, nil
}

// deadLetterIDs lists the ids of the dead letters after afterID, at most limit: without
// their payloads when the store can (dialect.DeadLetterIDLister), else from DeadLetters.
func deadLetterIDs(ctx context.Context, st dialect.Admin, afterID int64, limit int) ([]int64, error) {
	if l, ok := st.(dialect.DeadLetterIDLister); ok {
		return l.DeadLetterIDs(ctx, afterID, limit)
	}
	dls, err := st.DeadLetters(ctx, afterID, limit)
	if err != nil {
		return nil, err
	}
	ids := make([]int64, len(dls))
	for i, d := range dls {
		ids[i] = d.ID
	}
	return ids, nil
}

// joinIDs writes ids as "3, 7 and 12".
func joinIDs(ids []int64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.FormatInt(id, 10)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// oneLine makes s a table cell: on one line (whitespace runs become one space), safe for a
// terminal (escapeText) and at most limit runes.
func oneLine(s string, limit int) string {
	s = escapeText(strings.Join(strings.Fields(s), " "))
	if r := []rune(s); len(r) > limit {
		return string(r[:limit-1]) + "…"
	}
	if s == "" {
		return "-"
	}
	return s
}
