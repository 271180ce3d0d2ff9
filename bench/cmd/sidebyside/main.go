// Command sidebyside runs the same workloads, in one run, on the same PostgreSQL and NATS
// JetStream, against this project's relay (polling source with and without NOTIFY, WAL source
// in table and logical mode) and against Watermill's outbox forwarder (watermill-sql/v4
// forwarding to watermill-nats/v2 in JetStream mode), and reports drain
// throughput, steady-state and idle latency, producer overhead, and relay CPU and memory.
//
//	go run ./cmd/sidebyside --out ../docs/sidebyside-section.md --chart ../docs/sidebyside.png
//
// Each relay runs as a separate process (this program re-executed with --role relay), so its
// CPU time and peak RSS come from /proc/<pid> and exclude the producers and consumers, which
// run in this process. Every system gets its own PostgreSQL schema and its own JetStream
// stream, created up front and removed at the end (--keep leaves them).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// options are the command-line flags of both roles.
type options struct {
	role        string
	databaseURL string
	natsURL     string

	// Orchestrator.
	messages       int
	drainKeys      int
	steadyRate     int
	steadyDuration time.Duration
	steadyWorkers  int
	idleSamples    int
	overheadTx     int
	drainTimeout   time.Duration
	out, chart     string
	jsonOut        string
	only           string
	workloads      string
	keep           bool
	fromJSON       string

	// Knobs, shared with the relay role.
	outboxPollOnly time.Duration
	outboxNotify   time.Duration
	outboxBatch    int
	outboxWorkers  int
	walBatch       int
	walWorkers     int
	wmPoll         time.Duration
	wmBatch        int
	wmDrainBatches string

	// Relay role.
	kind, schema, prefix string
	poll                 time.Duration
	notify               bool
	batch, workers       int
	walMode, slot        string
	asyncCommit          bool
	logicalPrefix        string
}

func main() {
	var o options
	flag.StringVar(&o.role, "role", "", "internal: \"relay\" runs one relay process (started by the orchestrator)")
	flag.StringVar(&o.databaseURL, "database-url", envOr("OUTBOX_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL")
	flag.StringVar(&o.natsURL, "nats-url", envOr("NATS_URL", "nats://127.0.0.1:4222"), "NATS with JetStream")

	flag.IntVar(&o.messages, "messages", 100_000, "drain: backlog size")
	flag.IntVar(&o.drainKeys, "drain-keys", 1000, "drain: distinct keys in the backlog")
	flag.IntVar(&o.steadyRate, "steady-rate", 1000, "steady: commits per second (one message per transaction)")
	flag.DurationVar(&o.steadyDuration, "steady-duration", 30*time.Second, "steady: how long to produce")
	flag.IntVar(&o.steadyWorkers, "steady-producers", 8, "steady: producer goroutines sharing the schedule")
	flag.IntVar(&o.idleSamples, "idle-samples", 20, "idle: single messages, each after 200–600 ms of silence")
	flag.IntVar(&o.overheadTx, "overhead-tx", 2000, "producer overhead: transactions per variant")
	flag.DurationVar(&o.drainTimeout, "drain-timeout", 5*time.Minute, "drain: give up (and report the partial rate) after this")
	flag.StringVar(&o.out, "out", "-", "write the Markdown section here (- = stdout)")
	flag.StringVar(&o.chart, "chart", "", "write a PNG chart here")
	flag.StringVar(&o.jsonOut, "json", "", "write the raw results as JSON here")
	flag.StringVar(&o.only, "systems", "", "comma-separated system ids to run (default all)")
	flag.StringVar(&o.workloads, "workloads", "drain,idle,steady,overhead", "comma-separated workloads to run")
	flag.BoolVar(&o.keep, "keep", false, "keep the schemas and streams afterwards")
	flag.StringVar(&o.fromJSON, "from-json", "", "run nothing: render --out and --chart from the results a run saved with --json")

	flag.DurationVar(&o.outboxPollOnly, "outbox-poll-only-interval", 10*time.Millisecond, "outbox poll-only: poll interval")
	flag.DurationVar(&o.outboxNotify, "outbox-notify-interval", 100*time.Millisecond, "outbox with NOTIFY: fallback poll interval")
	flag.IntVar(&o.outboxBatch, "outbox-batch", 0, "outbox poll source: messages per claim (0: the library's default)")
	flag.IntVar(&o.outboxWorkers, "outbox-workers", 0, "outbox poll source: concurrent claims (0: the library's default)")
	flag.IntVar(&o.walBatch, "wal-batch", 0, "outbox WAL source: messages per batch (0: the library's default)")
	flag.IntVar(&o.walWorkers, "wal-workers", 0, "outbox WAL source: concurrent batches (0: the library's default)")
	flag.DurationVar(&o.wmPoll, "wm-poll", 10*time.Millisecond, "Watermill: subscriber PollInterval")
	flag.IntVar(&o.wmBatch, "wm-batch", 100, "Watermill: SubscribeBatchSize for the steady and idle workloads")
	flag.StringVar(&o.wmDrainBatches, "wm-drain-batches", "100,1000,5000", "Watermill: SubscribeBatchSize values tried in the drain")

	flag.StringVar(&o.kind, "kind", "", "relay role: outbox, outbox-wal, wm-offsets or wm-queue")
	flag.StringVar(&o.schema, "schema", "", "relay role: PostgreSQL schema")
	flag.StringVar(&o.prefix, "subject-prefix", "", "relay role: NATS subject prefix")
	flag.DurationVar(&o.poll, "poll", 0, "relay role: poll interval")
	flag.BoolVar(&o.notify, "notify", false, "relay role: outbox LISTEN/NOTIFY")
	flag.IntVar(&o.batch, "batch", 0, "relay role: batch size")
	flag.IntVar(&o.workers, "workers", 0, "relay role: outbox workers")
	flag.BoolVar(&o.asyncCommit, "async-commit", false, "relay role: outbox poll source with postgres.Config.AsyncCommit")
	flag.StringVar(&o.walMode, "wal-mode", "", "relay role: WAL source mode (table or logical)")
	flag.StringVar(&o.slot, "slot", "", "relay role: WAL source replication slot")
	flag.StringVar(&o.logicalPrefix, "logical-prefix", "", "relay role: WAL source logical message prefix")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch o.role {
	case "":
		if o.fromJSON != "" {
			err = render(o)
			break
		}
		err = orchestrate(ctx, o)
	case "relay":
		err = runRelay(ctx, o)
	default:
		err = fmt.Errorf("unknown role %q", o.role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sidebyside:", err)
		os.Exit(1) //nolint:gocritic // exitAfterDefer: the deferred stop only restores signal handling
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
