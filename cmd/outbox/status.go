package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/relay/wal"
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
	// BrokerDuplicates counts messages their broker acknowledged as duplicates.
	BrokerDuplicates int64 `json:"broker_duplicates"`
	// FailingTopics lists, per topic with failing messages, how many and the latest error.
	FailingTopics []topicJSON `json:"failing_topics"`
	Source        string      `json:"source"`
	// Healthy is false when a threshold given on the command line is exceeded; Problems then
	// says which (and the command exits 3).
	Healthy  bool     `json:"healthy"`
	Problems []string `json:"problems,omitempty"`
	// Slot is the WAL source's replication slot (source wal).
	Slot *slotJSON `json:"slot,omitempty"`
	// Binlog is the binlog source's persisted and the server's positions (source binlog).
	Binlog *binlogJSON `json:"binlog,omitempty"`
	// Pauses are the operator pauses (outbox pause), empty when nothing is paused; null when
	// the store keeps none (a schema without the pauses table: PausesMissing is true).
	Pauses        []pauseJSON `json:"pauses"`
	PausesMissing bool        `json:"pauses_missing,omitempty"`
}

// topicJSON is one topic's failing messages.
type topicJSON struct {
	Topic     string `json:"topic"`
	Failing   int64  `json:"failing"`
	LastError string `json:"last_error"`
}

// thresholds are outbox status's health limits; a negative count or zero age is unset.
type thresholds struct {
	maxRetrying, maxDead int64
	maxAge               time.Duration
}

// problems lists the thresholds s exceeds, as sentences naming the flag.
func (t thresholds) problems(s dialect.Stats) []string {
	var out []string
	if t.maxRetrying >= 0 && s.Retrying > t.maxRetrying {
		out = append(out, fmt.Sprintf("%d messages retrying, more than --max-retrying %d", s.Retrying, t.maxRetrying))
	}
	if t.maxDead >= 0 && s.DeadLetters > t.maxDead {
		out = append(out, fmt.Sprintf("%d dead letters, more than --max-dead %d", s.DeadLetters, t.maxDead))
	}
	if t.maxAge > 0 && s.OldestPending > t.maxAge {
		out = append(out, fmt.Sprintf("oldest pending message %s old, older than --max-age %s", age(s.OldestPending), t.maxAge))
	}
	return out
}

type slotJSON struct {
	Name          string `json:"name"`
	Exists        bool   `json:"exists"`
	Active        bool   `json:"active"`
	ConfirmedLSN  string `json:"confirmed_lsn,omitempty"`
	CurrentLSN    string `json:"current_lsn,omitempty"`
	RetainedBytes int64  `json:"retained_bytes"`
	WALStatus     string `json:"wal_status,omitempty"`
}

type binlogJSON struct {
	Name       string     `json:"name"`
	Saved      bool       `json:"saved"`
	Position   positionJS `json:"position"`
	Server     positionJS `json:"server"`
	SavedAgeMs int64      `json:"saved_age_ms,omitempty"`
}

type positionJS struct {
	GTID string `json:"gtid,omitempty"`
	File string `json:"file,omitempty"`
	Pos  uint32 `json:"pos,omitempty"`
}

func (a *app) statusCmd() *cobra.Command {
	var (
		asJSON bool
		watch  time.Duration
		limits thresholds
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the backlog, failing topics, dead letters and live relays; check their health",
		Long: `status summarises the outbox:
  pending            messages committed and not yet published
    ready            of which may be published now
    retrying         of which failed at least once (and may be waiting for their backoff)
  oldest pending     age of the oldest unpublished message: the relay's lag
  dead letters       messages that failed permanently or exhausted relay.max_attempts
  broker duplicates  messages the broker acknowledged as duplicates of earlier copies
  live relays        relays that sent a heartbeat in the last minute (polling source)
  failing topics     per topic with failing messages: how many, and the latest error

With --source wal it also shows the replication slot (--wal-slot): whether a relay is reading
it, the position it confirmed and the WAL it holds back (the lag guard's measure). With
--source binlog it shows the binlog position the relays saved (--binlog-name) beside the
server's current one. In logical WAL mode messages are not in the table: pending counts only
rows.

As a health check: --max-retrying N, --max-dead N and --max-age D make status exit 3
(unhealthy) when more than N messages are retrying, more than N are dead letters, or the
oldest pending message is older than D; stderr says which. Without them it exits 0 whatever
the numbers. Exit 1 means the outbox could not be read, 2 a bad command line.

--watch D shows the status again every D until interrupted (exit 0), with how the backlog
and the dead letters changed per second since the previous read; on a terminal it redraws
the screen, with --json it prints one JSON object per line. Health thresholds are reported,
not exited on, while watching.`,
		Example: `  outbox status
  outbox status --json | jq .failing_topics
  outbox status --max-dead 0 --max-age 5m     # health check: exit 3 on any dead letter or a 5-minute lag
  outbox status --watch 2s`,
		Args: func(cmd *cobra.Command, args []string) error {
			if err := noArgs(cmd, args); err != nil {
				return err
			}
			if limits.maxRetrying < -1 || limits.maxDead < -1 || limits.maxAge < 0 {
				return usagef("--max-retrying and --max-dead must be 0 or more, --max-age positive")
			}
			if cmd.Flags().Changed("watch") && watch < 100*time.Millisecond {
				return usagef("--watch must be at least 100ms")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withAdmin(cmd, func(ctx context.Context, st dialect.Admin, cfg config.Config) error {
				if watch > 0 {
					return a.watchStatus(ctx, st, cfg, limits, asJSON, watch)
				}
				out, s, err := readStatus(ctx, st, cfg, limits)
				if err != nil {
					return err
				}
				if asJSON {
					enc := json.NewEncoder(a.stdout)
					enc.SetIndent("", "  ")
					if err := enc.Encode(out); err != nil {
						return err
					}
				} else if err := a.printStatus(out, s); err != nil {
					return err
				}
				if !out.Healthy {
					return &exitError{code: exitUnhealthy, msg: "unhealthy: " + strings.Join(out.Problems, "; ")}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().DurationVar(&watch, "watch", 0, "show the status again every this long until interrupted (0: once)")
	cmd.Flags().Int64Var(&limits.maxRetrying, "max-retrying", -1, "exit 3 when more than this many messages are retrying (-1: no limit)")
	cmd.Flags().Int64Var(&limits.maxDead, "max-dead", -1, "exit 3 when there are more than this many dead letters (-1: no limit)")
	cmd.Flags().DurationVar(&limits.maxAge, "max-age", 0, "exit 3 when the oldest pending message is older than this (0: no limit)")
	addSettingFlags(cmd.Flags(), "source", "wal.slot", "binlog.name")
	return cmd
}

// readStatus reads the outbox's status and checks it against limits.
func readStatus(ctx context.Context, st dialect.Admin, cfg config.Config, limits thresholds) (statusJSON, dialect.Stats, error) {
	s, err := st.Stats(ctx)
	if err != nil {
		return statusJSON{}, s, err
	}
	out := statusJSON{
		Dialect:              string(st.Dialect()),
		Table:                cfg.Table,
		Pending:              s.Pending,
		Ready:                s.Ready,
		Retrying:             s.Retrying,
		OldestPendingSeconds: s.OldestPending.Seconds(),
		DeadLetters:          s.DeadLetters,
		LiveRelays:           s.Relays,
		BrokerDuplicates:     s.BrokerDuplicates,
		FailingTopics:        make([]topicJSON, 0, len(s.Topics)),
		Source:               cfg.Source,
		Problems:             limits.problems(s),
	}
	out.Healthy = len(out.Problems) == 0
	for _, t := range s.Topics {
		out.FailingTopics = append(out.FailingTopics, topicJSON{Topic: t.Topic, Failing: t.Failing, LastError: config.Redact(t.LastError)})
	}
	if err := sourceStatus(ctx, cfg, st, &out); err != nil {
		return out, s, err
	}
	if err := pauseStatus(ctx, st, &out); err != nil {
		return out, s, err
	}
	return out, s, nil
}

// pauseStatus fills out's operator pauses when the store keeps them.
func pauseStatus(ctx context.Context, st dialect.Admin, out *statusJSON) error {
	pr, ok := st.(dialect.Pauser)
	if !ok {
		return nil
	}
	ps, err := pr.ListPauses(ctx)
	if errors.Is(err, dialect.ErrNoPausesTable) {
		out.PausesMissing = true
		return nil
	}
	if err != nil {
		return err
	}
	out.Pauses = pausesJSON(ps)
	return nil
}

// watchJSON is one line of status --watch --json.
type watchJSON struct {
	Time time.Time `json:"time"`
	statusJSON
	// PendingPerSecond and DeadPerSecond are the changes since the previous read (absent
	// on the first).
	PendingPerSecond *float64 `json:"pending_per_second,omitempty"`
	DeadPerSecond    *float64 `json:"dead_letters_per_second,omitempty"`
}

// watchStatus shows the status every interval until ctx ends. A failed read is shown and
// retried at the next tick.
func (a *app) watchStatus(ctx context.Context, st dialect.Admin, cfg config.Config, limits thresholds, asJSON bool, interval time.Duration) error {
	redraw := !asJSON && isTerminal(a.stdout)
	var (
		prev   statusJSON
		prevAt time.Time
	)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		out, s, err := readStatus(ctx, st, cfg, limits)
		now := time.Now()
		if ctx.Err() != nil {
			return nil
		}
		line := watchJSON{Time: now.UTC(), statusJSON: out}
		if err == nil && !prevAt.IsZero() {
			dt := now.Sub(prevAt).Seconds()
			p, d := float64(out.Pending-prev.Pending)/dt, float64(out.DeadLetters-prev.DeadLetters)/dt
			line.PendingPerSecond, line.DeadPerSecond = &p, &d
		}
		switch {
		case asJSON && err != nil:
			fmt.Fprintf(a.stderr, "%s reading the outbox: %v\n", now.Format(time.TimeOnly), err)
		case asJSON:
			if err := json.NewEncoder(a.stdout).Encode(line); err != nil {
				return err
			}
		default:
			if redraw {
				fmt.Fprint(a.stdout, "\x1b[H\x1b[2J") // home, clear
			}
			fmt.Fprintf(a.stdout, "%s, every %s (Ctrl-C to stop)\n", now.Format(time.TimeOnly), interval)
			if err != nil {
				fmt.Fprintf(a.stdout, "reading the outbox: %s\n\n", oneLine(config.Redact(err.Error()), 200))
				break
			}
			if line.PendingPerSecond != nil {
				fmt.Fprintf(a.stdout, "backlog %+.1f/s, dead letters %+.1f/s\n", *line.PendingPerSecond, *line.DeadPerSecond)
			}
			if err := a.printStatus(out, s); err != nil {
				return err
			}
			for _, p := range out.Problems {
				fmt.Fprintf(a.stdout, "unhealthy: %s\n", p)
			}
			fmt.Fprintln(a.stdout)
		}
		if err == nil {
			prev, prevAt = out, now
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// printStatus writes the text form of outbox status.
func (a *app) printStatus(out statusJSON, s dialect.Stats) error {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "table\t%s (%s)\n", out.Table, out.Dialect)
	fmt.Fprintf(tw, "pending\t%d\n", s.Pending)
	fmt.Fprintf(tw, "  ready\t%d\n", s.Ready)
	fmt.Fprintf(tw, "  retrying\t%d\n", s.Retrying)
	fmt.Fprintf(tw, "oldest pending\t%s\n", age(s.OldestPending))
	fmt.Fprintf(tw, "dead letters\t%d\n", s.DeadLetters)
	fmt.Fprintf(tw, "broker duplicates\t%d\n", s.BrokerDuplicates)
	fmt.Fprintf(tw, "live relays\t%d\n", s.Relays)
	fmt.Fprintf(tw, "source\t%s\n", out.Source)
	printSourceStatus(tw, out)
	if len(out.FailingTopics) == 0 {
		fmt.Fprintf(tw, "failing topics\tnone\n")
	} else {
		fmt.Fprintf(tw, "failing topics\t%d\n", len(out.FailingTopics))
		for _, t := range out.FailingTopics {
			fmt.Fprintf(tw, "  %s\t%d failing, last error: %s\n", oneLine(t.Topic, 60), t.Failing, oneLine(t.LastError, 120))
		}
	}
	switch {
	case out.PausesMissing:
		fmt.Fprintf(tw, "paused\t- (no pauses table: run 'outbox migrate up')\n")
	case out.Pauses == nil:
	case len(out.Pauses) == 0:
		fmt.Fprintf(tw, "paused\tnothing\n")
	default:
		fmt.Fprintf(tw, "paused\t%d (outbox pause list)\n", len(out.Pauses))
		for _, p := range out.Pauses {
			fmt.Fprintf(tw, "  %s %s\tsince %s, %s\n", p.Kind, oneLine(p.Name, 60), p.Since.Format(time.RFC3339), oneLine(p.Reason, 80))
		}
	}
	return tw.Flush()
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

// sourceStatus adds what the log sources keep outside the table: the WAL slot, the binlog
// positions.
func sourceStatus(ctx context.Context, cfg config.Config, st dialect.Admin, out *statusJSON) error {
	switch cfg.Source {
	case config.SourceWAL:
		pg, ok := st.(*postgres.Store)
		if !ok {
			return nil // config validation refuses wal elsewhere
		}
		sl := &slotJSON{Name: cfg.WAL.Slot}
		ss, err := wal.Slot(ctx, pg.Pool(), cfg.WAL.Slot)
		switch {
		case errors.Is(err, wal.ErrSlotNotFound):
		case err != nil:
			return err
		default:
			sl.Exists = true
			sl.Active = ss.Active
			sl.ConfirmedLSN = ss.ConfirmedLSN
			sl.CurrentLSN = ss.CurrentLSN
			sl.RetainedBytes = ss.RetainedBytes
			sl.WALStatus = ss.WALStatus
		}
		out.Slot = sl
	case config.SourceBinlog:
		b, err := binlogStatus(ctx, cfg, st)
		if err != nil {
			return err
		}
		out.Binlog = b
	}
	return nil
}

func printSourceStatus(tw io.Writer, out statusJSON) {
	if sl := out.Slot; sl != nil {
		if !sl.Exists {
			fmt.Fprintf(tw, "slot\t%s: does not exist (the wal relay creates it at start)\n", sl.Name)
			return
		}
		state := "inactive (no relay reading)"
		if sl.Active {
			state = "active"
		}
		fmt.Fprintf(tw, "slot\t%s, %s\n", sl.Name, state)
		fmt.Fprintf(tw, "  confirmed lsn\t%s (server at %s)\n", sl.ConfirmedLSN, sl.CurrentLSN)
		fmt.Fprintf(tw, "  retained wal\t%s\n", bytesText(sl.RetainedBytes))
		if sl.WALStatus != "" {
			fmt.Fprintf(tw, "  wal status\t%s\n", sl.WALStatus)
		}
	}
	if b := out.Binlog; b != nil {
		fmt.Fprintf(tw, "binlog\t%s\n", b.Name)
		if b.Saved {
			fmt.Fprintf(tw, "  saved position\t%s (saved %s ago)\n", escapeText(b.Position.String()), age(time.Duration(b.SavedAgeMs)*time.Millisecond))
		} else {
			fmt.Fprintf(tw, "  saved position\tnone (the binlog relay saves one once it runs)\n")
		}
		fmt.Fprintf(tw, "  server position\t%s\n", escapeText(b.Server.String()))
	}
}

func (p positionJS) String() string {
	var parts []string
	if p.GTID != "" {
		parts = append(parts, "gtid "+p.GTID)
	}
	if p.File != "" {
		parts = append(parts, fmt.Sprintf("%s:%d", p.File, p.Pos))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// bytesText formats a byte count for people.
func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
