package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/dialect"
)

// replayJSON is the answer of 'replay --json'.
type replayJSON struct {
	DryRun   bool      `json:"dry_run"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Matched  int64     `json:"matched"`
	Replayed int64     `json:"replayed"`
}

// replayCmd is 'outbox replay': publish again the published messages the outbox keeps in
// retention mode, by time window, topics and keys, against the database directly.
func (a *app) replayCmd() *cobra.Command {
	var (
		from, to       string
		topics, keys   []string
		dryRun, asJSON bool
		noProgress     bool
		batch          int
	)
	cmd := &cobra.Command{
		Use:   "replay --from TIME --to TIME [--topic TOPIC]... [--key KEY]...",
		Short: "Publish retained messages again (retention mode)",
		Long: `With retention set, the relay marks published rows instead of deleting them and keeps them
that long. 'outbox replay' publishes again those whose publication time is in [--from, --to),
of the given topics and keys (exact names; all when none is given): each is moved to the end
of the queue as a new row with the same message id, its attempts reset, in their original
order, so the messages of a key keep their order among themselves, after the key's messages
already waiting. Every source sees the new rows, wal and binlog included. Consumers that
deduplicate by message id (package inbox) take them as duplicates while they remember the
ids. It works on what the table holds, whatever the running relay's settings; --dry-run only
counts. Unless --json or --no-progress, a progress bar (plain lines when standard error is
not a terminal) shows how far it got. Times are RFC 3339 (2026-12-07T20:00:00Z), 'now', or a negative duration from now
(-90m).`,
		Example: `  outbox replay --from 2026-12-07T20:00:00Z --to 2026-12-07T21:00:00Z --topic orders --dry-run
  outbox replay --from -1h --to now --key order-1234 --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			f := dialect.ReplayFilter{Topics: topics, Keys: keys}
			var err error
			if f.From, err = parseReplayTime("--from", from, now); err != nil {
				return err
			}
			if f.To, err = parseReplayTime("--to", to, now); err != nil {
				return err
			}
			if err := f.Validate(); err != nil {
				return usagef("%s", strings.TrimPrefix(err.Error(), "replay: "))
			}
			if batch < 1 || batch > 100000 {
				return usagef("--batch must be between 1 and 100000")
			}
			return a.withStore(cmd, func(ctx context.Context, st dialect.Store, cfg config.Config) error {
				rp, ok := st.(dialect.Replayer)
				if !ok {
					return fmt.Errorf("the %s store cannot replay messages", st.Dialect())
				}
				hook, finish := a.progressHook(asJSON || noProgress, "replay")
				done, total, err := runReplay(ctx, rp, f, batch, dryRun, hook)
				finish()
				if err != nil {
					if done > 0 {
						return fmt.Errorf("%w (%d of %d messages replayed before the error)", err, done, total)
					}
					return err
				}
				if asJSON {
					enc := json.NewEncoder(a.stdout)
					enc.SetIndent("", "  ")
					return enc.Encode(replayJSON{DryRun: dryRun, From: f.From.UTC(), To: f.To.UTC(), Matched: total, Replayed: done})
				}
				window := fmt.Sprintf("published from %s to %s", f.From.UTC().Format(time.RFC3339Nano), f.To.UTC().Format(time.RFC3339Nano))
				if dryRun {
					fmt.Fprintf(a.stdout, "%d message(s) %s would be replayed (dry run)\n", total, window)
				} else {
					fmt.Fprintf(a.stdout, "replayed %d message(s) %s\n", done, window)
				}
				if total == 0 && cfg.Retention == 0 {
					fmt.Fprintln(a.stderr, "outbox: retention is 0 in this configuration: a relay with it deletes messages on publish, and keeps none to replay")
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "replay messages published at or after `TIME` (required)")
	cmd.Flags().StringVar(&to, "to", "", "replay messages published before `TIME` (required)")
	cmd.Flags().StringArrayVar(&topics, "topic", nil, "only messages of this `TOPIC` (repeatable)")
	cmd.Flags().StringArrayVar(&keys, "key", nil, "only messages of this `KEY` (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "count the messages, change nothing")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the counts as JSON")
	cmd.Flags().BoolVar(&noProgress, "no-progress", false, "report no progress on standard error")
	cmd.Flags().IntVar(&batch, "batch", dialect.DefaultReplayBatch, "messages moved per transaction")
	return cmd
}

// parseReplayTime reads an RFC 3339 time, "now", or a negative duration from now.
func parseReplayTime(flag, v string, now time.Time) (time.Time, error) {
	switch {
	case v == "":
		return time.Time{}, usagef("replay needs %s", flag)
	case v == "now":
		return now, nil
	case strings.HasPrefix(v, "-"):
		d, err := time.ParseDuration(v)
		if err != nil {
			return time.Time{}, usagef("%s: %q is not a duration (e.g. -90m)", flag, v)
		}
		return now.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, usagef("%s: %q is not an RFC 3339 time (e.g. 2026-12-07T20:00:00Z), now, or a negative duration", flag, v)
	}
	return t, nil
}

// runReplay counts what f selects (bounded by the outbox's last sequence number, so that
// messages published again meanwhile are not taken twice) and, unless dryRun, replays it,
// batch messages per transaction, calling progress (when set) with the messages done so far
// of the total after each batch.
func runReplay(ctx context.Context, rp dialect.Replayer, f dialect.ReplayFilter, batch int, dryRun bool, progress func(done, total int64)) (done, total int64, err error) {
	last, err := rp.LastSeq(ctx)
	if err != nil || last == 0 {
		return 0, 0, err
	}
	f.MaxSeq = last
	if total, err = rp.CountPublished(ctx, f); err != nil || dryRun || total == 0 {
		return 0, total, err
	}
	if progress != nil {
		progress(0, total)
	}
	done, err = dialect.Replay(ctx, rp, f, batch, func(done int64) {
		if progress != nil {
			progress(done, total)
		}
	})
	return done, total, err
}
