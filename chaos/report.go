package chaos

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

// Report is the outcome of a run. Times are seconds (or milliseconds where the name says
// so) since the start of the load phase.
type Report struct {
	Sink        string   `json:"sink"`
	Database    string   `json:"database"` // postgres or mariadb
	Source      string   `json:"source"`
	Relays      int      `json:"relays"`
	Keys        int      `json:"keys"`
	Producers   int      `json:"producers"`
	TxMessages  int      `json:"tx_messages"` // most messages per transaction
	TargetRate  int      `json:"target_rate"`
	Seed        uint64   `json:"seed"`
	DurationSec float64  `json:"duration_seconds"` // of the load and fault phase
	OutboxTable string   `json:"outbox_table"`
	WorkDir     string   `json:"work_dir,omitempty"` // kept: relay logs, broker stores
	Notes       []string `json:"notes,omitempty"`
	Error       string   `json:"error,omitempty"` // the run stopped early: the figures are partial

	// The workload.
	Transactions          int     `json:"transactions"`             // committed (per the business table)
	Committed             int     `json:"committed"`                // messages of committed transactions
	RolledBackTx          int     `json:"rolled_back_transactions"` // rolled back on purpose
	RolledBack            int     `json:"rolled_back"`              // their messages
	Aborted               int     `json:"aborted"`                  // messages of transactions that failed before COMMIT
	UncertainCommitted    int     `json:"uncertain_committed"`      // COMMIT failed, yet the business table has the rows
	UncertainNotCommitted int     `json:"uncertain_not_committed"`  // COMMIT failed and the rows are not there
	ProducerErrors        int64   `json:"producer_errors"`
	LastProducerError     string  `json:"last_producer_error,omitempty"`
	HostileErrors         int64   `json:"hostile_errors"` // hostile rows whose INSERT failed
	LastHostileError      string  `json:"last_hostile_error,omitempty"`
	CommitRate            float64 `json:"commit_rate"` // committed messages per second of the load phase

	// What the consumer got.
	Deliveries     int64    `json:"deliveries"`        // every copy
	Delivered      int      `json:"delivered"`         // committed messages delivered at least once
	Duplicates     int64    `json:"duplicates"`        // copies beyond the first, of any message
	DuplicatePct   float64  `json:"duplicate_percent"` // of Committed
	LateDuplicates int      `json:"late_duplicates"`   // copies that arrived after a later message of their key (allowed)
	Unknown        int      `json:"unknown"`           // deliveries that are no message of this run
	UnknownSample  []string `json:"unknown_sample,omitempty"`

	// The guarantees.
	Lost                 int              `json:"lost"`
	LostSample           []LostMessage    `json:"lost_sample,omitempty"`
	LostInOutbox         int              `json:"lost_in_outbox"`      // still in the outbox table (not yet published)
	LostDeadLettered     int              `json:"lost_dead_lettered"`  // moved to the dead-letter table
	LostGone             int              `json:"lost_gone"`           // in neither table: removed without delivery
	ConsumerMissed       int              `json:"consumer_missed"`     // stored by the broker, missed by the consumer (not lost)
	Phantom              int              `json:"phantom"`             // delivered, but their transaction never committed
	PhantomRolledBack    int              `json:"phantom_rolled_back"` // of which rolled back on purpose
	PhantomSample        []string         `json:"phantom_sample,omitempty"`
	OrderViolations      int              `json:"order_violations"`
	OrderViolationSample []OrderViolation `json:"order_violation_sample,omitempty"`
	// DeadOrdinary are messages of the producers found in the dead-letter table (none may
	// be: a dead letter is not a delivery).
	DeadOrdinary       int      `json:"dead_ordinary"`
	DeadOrdinarySample []string `json:"dead_ordinary_sample,omitempty"`
	DeadUnknown        int      `json:"dead_unknown"` // dead letters that are no row of this run
	// PublishLimit is (max_attempts + 1) × (committed messages + hostile rows): the most
	// deliveries the relays may make. Deliveries counts what the broker kept: copies it
	// dropped as duplicates (JetStream's Nats-Msg-Id window) are not seen.
	PublishLimit int64 `json:"publish_limit"`

	// Hostile rows (Config.Hostile), per class.
	Hostile []HostileClass `json:"hostile,omitempty"`

	// Timing.
	LatencyP50MS        float64 `json:"latency_p50_ms"` // first delivery − COMMIT returned
	LatencyP99MS        float64 `json:"latency_p99_ms"`
	LatencyMaxMS        float64 `json:"latency_max_ms"`
	LastFaultHealedSec  float64 `json:"last_fault_healed_seconds"`
	LastCommitSec       float64 `json:"last_commit_seconds"`
	DrainAfterFaultSec  float64 `json:"drain_after_last_fault_seconds"` // last first delivery − last fault healed
	DrainAfterCommitSec float64 `json:"drain_after_last_commit_seconds"`
	Drained             bool    `json:"drained"` // every committed message delivered within the drain timeout

	// Faults.
	Faults        map[string]int `json:"faults"` // by kind
	FaultTimeline []Fault        `json:"fault_timeline"`
	RelayStarts   int            `json:"relay_starts"`
	RelayExits    []RelayExit    `json:"relay_exits,omitempty"` // exits the checker did not cause

	// The consumers (Config.Consumers): the effects they applied through the inbox.
	Consumers      int         `json:"consumers"` // processes run
	ConsumerStarts int         `json:"consumer_starts"`
	ConsumerExits  []RelayExit `json:"consumer_exits,omitempty"` // exits the checker did not cause (Relay is the process)
	// EffectsApplied counts the effect rows; EffectsByProcess by consumer process.
	EffectsApplied   int   `json:"effects_applied"`
	EffectsByProcess []int `json:"effects_by_process,omitempty"`
	// EffectsMissing are committed messages without an effect.
	EffectsMissing       int      `json:"effects_missing"`
	EffectsMissingSample []string `json:"effects_missing_sample,omitempty"`
	// EffectsDouble are messages with more than one effect; EffectsDoubleRows the rows
	// beyond the first.
	EffectsDouble       int      `json:"effects_double"`
	EffectsDoubleRows   int      `json:"effects_double_rows"`
	EffectsDoubleSample []string `json:"effects_double_sample,omitempty"`
	// EffectsOutOfOrder are first effects of a key's message whose sequence number is not
	// greater than that of an effect of the key applied before (by apply number).
	EffectsOutOfOrder  int      `json:"effects_out_of_order"`
	EffectsOrderSample []string `json:"effects_order_sample,omitempty"`
	// EffectsUnknown are effects of no committed message.
	EffectsUnknown       int      `json:"effects_unknown"`
	EffectsUnknownSample []string `json:"effects_unknown_sample,omitempty"`
	EffectsUnreadable    bool     `json:"effects_unreadable,omitempty"`
	InboxDeadUnreadable  bool     `json:"inbox_dead_unreadable,omitempty"`
	// InboxDeadLetters are the consumers' inbox dead letters (up to 1000 read).
	InboxDeadLetters int      `json:"inbox_dead_letters"`
	InboxDeadSample  []string `json:"inbox_dead_sample,omitempty"`
	EffectsDrained   bool     `json:"effects_drained"`
	// EffectsDrainSec is the wait, from the start of the drain, until every committed
	// message had its effect (or the drain timed out).
	EffectsDrainSec float64 `json:"effects_drain_seconds"`

	// The table at the end.
	OutboxPending     int64 `json:"outbox_pending"`
	OutboxDeadLetters int64 `json:"outbox_dead_letters"`
}

// Fault is one injected fault.
type Fault struct {
	Kind      string  `json:"kind"`
	AtSec     float64 `json:"at_seconds"`
	HealedSec float64 `json:"healed_seconds"`
	Detail    string  `json:"detail,omitempty"`
}

// OrderViolation is the first delivery of a key's message after the first delivery of a later
// message of the same key.
type OrderViolation struct {
	Key       string  `json:"key"`
	Seq       int     `json:"seq"`
	AfterSeq  int     `json:"after_seq"` // the highest sequence number of the key delivered before it
	MessageID string  `json:"message_id"`
	AtSeconds float64 `json:"at_seconds"`
}

// LostMessage is a committed message never delivered, with what the tables say about it.
type LostMessage struct {
	MessageID   string  `json:"message_id"`
	Key         string  `json:"key"`
	Seq         int     `json:"seq"`
	CommitSec   float64 `json:"commit_seconds"`
	Where       string  `json:"where"` // "outbox", "dead_letters" or "gone"
	OutboxID    int64   `json:"outbox_id,omitempty"`
	Attempts    int     `json:"attempts,omitempty"`
	LastError   string  `json:"last_error,omitempty"`
	AvailableAt string  `json:"available_at,omitempty"`
	FailedAt    string  `json:"failed_at,omitempty"`
}

// RelayExit is a relay process that exited without being killed by the checker.
type RelayExit struct {
	Relay     int      `json:"relay"`
	AtSeconds float64  `json:"at_seconds"`
	Status    string   `json:"status"`
	LogTail   []string `json:"log_tail,omitempty"`
}

// OK reports whether no guarantee was violated: nothing lost, nothing invented, no
// per-key order violation.
func (r *Report) OK() bool {
	return len(r.Violations()) == 0
}

// HostileFailed returns how many hostile rows did not meet their class's fate.
func (r *Report) HostileFailed() int {
	n := 0
	for i := range r.Hostile {
		n += r.Hostile[i].Failed()
	}
	return n
}

// Violations names the violated guarantees.
func (r *Report) Violations() []string {
	var v []string
	if r.Lost > 0 {
		v = append(v, fmt.Sprintf("%d lost", r.Lost))
	}
	if r.Phantom > 0 {
		v = append(v, fmt.Sprintf("%d phantom", r.Phantom))
	}
	if r.Unknown > 0 {
		v = append(v, fmt.Sprintf("%d unknown deliveries", r.Unknown))
	}
	if r.OrderViolations > 0 {
		v = append(v, fmt.Sprintf("%d per-key order violations", r.OrderViolations))
	}
	if r.DeadOrdinary > 0 {
		v = append(v, fmt.Sprintf("%d ordinary messages dead-lettered", r.DeadOrdinary))
	}
	if r.PublishLimit > 0 && r.Deliveries > r.PublishLimit {
		v = append(v, fmt.Sprintf("%d deliveries, over the limit of %d", r.Deliveries, r.PublishLimit))
	}
	if r.Consumers > 0 {
		if r.EffectsMissing > 0 {
			v = append(v, fmt.Sprintf("%d committed messages without an effect", r.EffectsMissing))
		}
		if r.EffectsDouble > 0 {
			v = append(v, fmt.Sprintf("%d messages applied more than once (%d extra effects)", r.EffectsDouble, r.EffectsDoubleRows))
		}
		if r.EffectsOutOfOrder > 0 {
			v = append(v, fmt.Sprintf("%d effects out of their key's order", r.EffectsOutOfOrder))
		}
		if r.EffectsUnknown > 0 {
			v = append(v, fmt.Sprintf("%d effects of no committed message", r.EffectsUnknown))
		}
		if r.InboxDeadLetters > 0 {
			v = append(v, fmt.Sprintf("%d inbox dead letters", r.InboxDeadLetters))
		}
		if r.EffectsUnreadable {
			v = append(v, "the effects could not be read")
		}
		if r.InboxDeadUnreadable {
			v = append(v, "the inbox's dead letters could not be read")
		}
	}
	for i := range r.Hostile {
		if c := &r.Hostile[i]; c.Failed() > 0 {
			v = append(v, fmt.Sprintf("hostile %s: %d of %d rows did not meet their fate (%s)", c.Class, c.Failed(), c.Expected, c.Fate))
		}
	}
	return v
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) {
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("outbox chaos: sink %s, database %s, source %s, %d relay processes, %d keys, %d producers (1–%d messages per transaction), target %d msg/s, %.0fs of faults, seed %d",
		r.Sink, r.Database, r.Source, r.Relays, r.Keys, r.Producers, r.TxMessages, r.TargetRate, r.DurationSec, r.Seed)
	p("  table %s", r.OutboxTable)
	if r.WorkDir != "" {
		p("  work dir (relay logs, broker stores) kept: %s", r.WorkDir)
	}
	p("faults:         %s; relay starts %d, relay exits not caused by the checker %d (a relay exits 1 when the database is unreachable at start)", faultCounts(r.Faults), r.RelayStarts, len(r.RelayExits))
	p("committed:      %d messages in %d transactions (%.0f msg/s)", r.Committed, r.Transactions, r.CommitRate)
	p("rolled back:    %d messages in %d transactions (on purpose); %d aborted by errors; COMMIT failed: %d committed anyway, %d not",
		r.RolledBack, r.RolledBackTx, r.Aborted, r.UncertainCommitted, r.UncertainNotCommitted)
	p("delivered:      %d unique of %d committed; %d deliveries", r.Delivered, r.Committed, r.Deliveries)
	p("duplicates:     %d (%.3f%%), of which %d after a later message of their key", r.Duplicates, r.DuplicatePct, r.LateDuplicates)
	p("lost:           %d (still in the outbox %d, dead-lettered %d, gone %d); consumer missed but broker has: %d",
		r.Lost, r.LostInOutbox, r.LostDeadLettered, r.LostGone, r.ConsumerMissed)
	p("phantom:        %d (from rolled-back transactions %d); unknown deliveries %d", r.Phantom, r.PhantomRolledBack, r.Unknown)
	p("order:          %d per-key violations", r.OrderViolations)
	p("dead letters:   %d ordinary messages (must be 0), %d not of this run; deliveries %d of at most %d", r.DeadOrdinary, r.DeadUnknown, r.Deliveries, r.PublishLimit)
	for _, c := range r.Hostile {
		switch c.Fate {
		case FateRefused:
			p("hostile %-31s expected %3d, refused %3d, accepted %3d (dead-lettered %d, delivered %d), wrong reason %d, skipped %d (want the INSERT refused naming %s)",
				c.Class+":", c.Expected, c.Refused, c.Accepted, c.DeadLettered, c.Delivered, c.WrongReason, c.Skipped, c.Reason)
		default:
			want := "delivered"
			if c.Fate == FateDead {
				want = fmt.Sprintf("dead, reason naming %s", c.Reason)
			}
			p("hostile %-31s expected %3d, dead-lettered %3d, delivered %3d, missing %3d, wrong reason %d, wrong headers %d, uncertain %d (want %s)",
				c.Class+":", c.Expected, c.DeadLettered, c.Delivered, c.Missing, c.WrongReason, c.WrongHeaders, c.Uncertain, want)
		}
		for _, s := range c.Sample {
			p("  HOSTILE %s %s", c.Class, s)
		}
	}
	p("latency:        p50 %.1f ms, p99 %.1f ms, max %.1f ms (first delivery − COMMIT)", r.LatencyP50MS, r.LatencyP99MS, r.LatencyMaxMS)
	p("drain:          %.2fs after the last fault healed (at %.1fs), %.2fs after the last commit; drained: %v",
		r.DrainAfterFaultSec, r.LastFaultHealedSec, r.DrainAfterCommitSec, r.Drained)
	p("outbox at end:  %d pending, %d dead letters", r.OutboxPending, r.OutboxDeadLetters)
	if r.Consumers > 0 {
		p("consumers:      %d processes, %d starts, %d exits not caused by the checker; effects applied by each process: %v", r.Consumers, r.ConsumerStarts, len(r.ConsumerExits), r.EffectsByProcess)
		p("effects:        %d applied; missing %d, applied twice %d (%d extra), out of order %d, of no committed message %d; inbox dead letters %d; all applied %.2fs into the drain: %v",
			r.EffectsApplied, r.EffectsMissing, r.EffectsDouble, r.EffectsDoubleRows, r.EffectsOutOfOrder, r.EffectsUnknown, r.InboxDeadLetters, r.EffectsDrainSec, r.EffectsDrained)
	}
	if r.ProducerErrors > 0 {
		p("producer errors: %d (last: %s)", r.ProducerErrors, r.LastProducerError)
	}
	if r.HostileErrors > 0 {
		p("hostile insert errors: %d (last: %s)", r.HostileErrors, r.LastHostileError)
	}
	for _, n := range r.Notes {
		p("note: %s", n)
	}
	for _, m := range r.LostSample {
		p("  LOST %s key %s seq %d committed at %.3fs: %s", m.MessageID, m.Key, m.Seq, m.CommitSec, lostWhere(m))
	}
	for _, v := range r.OrderViolationSample {
		p("  ORDER key %s: seq %d (%s) first delivered at %.3fs after seq %d", v.Key, v.Seq, v.MessageID, v.AtSeconds, v.AfterSeq)
	}
	for _, s := range r.PhantomSample {
		p("  PHANTOM %s", s)
	}
	for _, s := range r.UnknownSample {
		p("  UNKNOWN %s", s)
	}
	for _, s := range r.DeadOrdinarySample {
		p("  DEAD %s", s)
	}
	for _, s := range r.EffectsMissingSample {
		p("  EFFECT MISSING %s", s)
	}
	for _, s := range r.EffectsDoubleSample {
		p("  EFFECT TWICE %s", s)
	}
	for _, s := range r.EffectsOrderSample {
		p("  EFFECT ORDER %s", s)
	}
	for _, s := range r.EffectsUnknownSample {
		p("  EFFECT UNKNOWN %s", s)
	}
	for _, s := range r.InboxDeadSample {
		p("  INBOX DEAD %s", s)
	}
	for i, e := range r.ConsumerExits {
		if i == 5 {
			p("  ... %d more consumer exits (see consumer_exits in --json)", len(r.ConsumerExits)-i)
			break
		}
		p("  consumer %d exited at %.1fs (%s): %s", e.Relay, e.AtSeconds, e.Status, strings.Join(e.LogTail, " | "))
	}
	for i, e := range r.RelayExits {
		if i == 5 {
			p("  ... %d more relay exits (see relay_exits in --json)", len(r.RelayExits)-i)
			break
		}
		p("  relay %d exited at %.1fs (%s): %s", e.Relay, e.AtSeconds, e.Status, strings.Join(e.LogTail, " | "))
	}
	if r.Error != "" {
		p("result:         INCOMPLETE: %s", r.Error)
	} else if r.OK() {
		if r.Consumers > 0 {
			p("result:         OK (nothing lost, nothing invented, per-key order kept; every effect applied once, in its key's order)")
		} else {
			p("result:         OK (nothing lost, nothing invented, per-key order kept)")
		}
	} else {
		p("result:         VIOLATED: %s", strings.Join(r.Violations(), ", "))
	}
}

func lostWhere(m LostMessage) string {
	switch m.Where {
	case "outbox":
		return fmt.Sprintf("still in the outbox (row %d, %d attempts, available at %s, last error %q)", m.OutboxID, m.Attempts, m.AvailableAt, m.LastError)
	case "dead_letters":
		return fmt.Sprintf("dead-lettered at %s after %d attempts: %q", m.FailedAt, m.Attempts, m.LastError)
	default:
		return "in neither the outbox nor the dead-letter table: deleted without reaching the broker"
	}
}

func faultCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	kinds := make([]string, 0, len(m))
	for k := range m {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
