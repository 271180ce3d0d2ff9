package chaos_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/outboxgo/outbox/chaos"
	"github.com/outboxgo/outbox/internal/testutil/service"
)

var outboxBin, consumerBin string

// TestMain builds the outbox command and the consumer program once for every run (not with -short: the runs need the
// databases and are skipped), and checks that no run leaves a goroutine behind (brokers,
// proxies, consumers, relay supervisors).
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		code := m.Run()
		if code == 0 {
			if err := goleak.Find(); err != nil {
				fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
				code = 1
			}
		}
		os.Exit(code)
	}
	dir, err := os.MkdirTemp("", "outbox-chaos-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	outboxBin = filepath.Join(dir, "outbox")
	if out, err := exec.Command("go", "build", "-o", outboxBin, "github.com/outboxgo/outbox/cmd/outbox").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the outbox command: %v\n%s", err, out)
		os.Exit(1)
	}
	consumerBin = filepath.Join(dir, "outbox-chaos-consumer")
	if out, err := exec.Command("go", "build", "-o", consumerBin, "github.com/outboxgo/outbox/chaos/cmd/outbox-chaos-consumer").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the consumer program: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// TestShortProfile is the CI profile: for each sink, three relay processes on one table for
// 20 seconds of kill -9s, broker restarts (or cuts, for the shared RabbitMQ, Redis and
// Mosquitto), database and broker connection cuts and terminated database sessions, then the
// drain. Nothing committed may be lost, nothing rolled back may appear, and each key's
// messages must arrive in order.
func TestShortProfile(t *testing.T) {
	t.Parallel()
	profiles := map[string]chaos.Config{}
	for _, sink := range chaos.Sinks {
		profiles[sink] = chaos.Config{Sink: sink}
	}
	runProfiles(t, 20*time.Second, profiles)
}

// TestShortProfileWAL runs the WAL source the same way, in both storage modes, against
// JetStream: three `outbox relay --source wal` processes on one slot (one reads, two wait as
// hot standbys), kill -9s, broker restarts and cuts, database cuts and terminated sessions.
func TestShortProfileWAL(t *testing.T) {
	t.Parallel()
	runProfiles(t, 15*time.Second, map[string]chaos.Config{
		chaos.SourceWAL:        {Sink: chaos.SinkNATS, Source: chaos.SourceWAL},
		chaos.SourceWALLogical: {Sink: chaos.SinkNATS, Source: chaos.SourceWALLogical},
	})
}

// TestShortProfileMariaDB runs the checker on MariaDB, with both of its sources, against
// JetStream: three `outbox relay` processes polling the table (no notifications there), or
// three `outbox relay --source binlog` processes on one binlog position (one streams, two wait
// for its lock as hot standbys); kill -9s, broker restarts and cuts, database cuts and killed
// sessions.
func TestShortProfileMariaDB(t *testing.T) {
	t.Parallel()
	runProfiles(t, 15*time.Second, map[string]chaos.Config{
		chaos.SourcePoll:   {Sink: chaos.SinkNATS, Database: chaos.DatabaseMariaDB, Source: chaos.SourcePoll},
		chaos.SourceBinlog: {Sink: chaos.SinkNATS, Database: chaos.DatabaseMariaDB, Source: chaos.SourceBinlog},
	})
}

// TestShortProfileHostile mixes hostile rows, written with plain SQL, into the load on each
// database (poll source, JetStream, the same faults): rows the relay's decoder cannot read
// (infinite or zero times, attempts out of range, message ids that are not canonical UUIDs,
// headers that are not an object) and rows whose headers a sink must refuse (Nats-*, ce-
// attributes in any case, CR LF in a value, a structured-mode content type). Each must end
// in the dead-letter table with a reason naming the column or header (headers with
// non-string values are delivered, as their JSON text), while every other message is
// delivered in order and the deliveries stay within (max_attempts + 1) × messages.
func TestShortProfileHostile(t *testing.T) {
	t.Parallel()
	runProfiles(t, 20*time.Second, map[string]chaos.Config{
		chaos.DatabasePostgres: {Sink: chaos.SinkNATS, Database: chaos.DatabasePostgres, Hostile: 5},
		chaos.DatabaseMariaDB:  {Sink: chaos.SinkNATS, Database: chaos.DatabaseMariaDB, Hostile: 5},
	})
}

// TestConsumerProfile runs, for each sink with an inbox adapter, the short profile with
// consumer processes too: the adapter in separate processes (three where the broker keeps a
// key's order across competing consumers, else one; see each broker's inboxNotes), killed
// with kill -9 and restarted, their database sessions cut and terminated, their broker
// connections cut (and the broker restarted where the run owns it), each applying every
// message's effect through the inbox. Every committed message must end with exactly one
// effect, each key's effects in order, and no inbox dead letter.
func TestConsumerProfile(t *testing.T) {
	t.Parallel()
	if len(chaos.ConsumerSinks) == 0 {
		t.Skip("no inbox adapter is wired into the checker")
	}
	profiles := map[string]chaos.Config{}
	for _, sink := range chaos.ConsumerSinks {
		profiles[sink] = chaos.Config{Sink: sink, Consumers: 3}
	}
	runProfiles(t, 15*time.Second, profiles)
}

// runProfiles runs each profile in a parallel subtest for d at 200 messages/s over 100 keys,
// and checks it with checkProfile. The profiles need PostgreSQL or MariaDB (and the shared
// brokers for some sinks): -short skips them.
func runProfiles(t *testing.T, d time.Duration, profiles map[string]chaos.Config) {
	t.Helper()
	service.Require(t, "PostgreSQL, MariaDB and the shared brokers")
	for name, cfg := range profiles {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), d+3*time.Minute)
			defer cancel()
			cfg.Duration, cfg.Rate, cfg.Keys, cfg.OutboxBinary, cfg.ConsumerBinary = d, 200, 100, outboxBin, consumerBin
			rep, err := chaos.Run(ctx, cfg)
			checkProfile(t, rep, err)
			if cfg.Hostile > 0 && len(rep.Hostile) == 0 {
				t.Error("no hostile class in the report: the hostile rows checked nothing")
			}
		})
	}
}

// checkProfile logs a profile's report and fails the test unless it kept every guarantee,
// drained, and actually rolled back transactions and injected faults.
func checkProfile(t *testing.T, rep chaos.Report, err error) {
	t.Helper()
	var buf bytes.Buffer
	rep.WriteText(&buf)
	t.Logf("report:\n%s", buf.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("guarantees violated: %v (work dir %s, seed %d)", rep.Violations(), rep.WorkDir, rep.Seed)
	}
	if !rep.Drained || rep.Committed == 0 || rep.Delivered != rep.Committed {
		t.Fatalf("not drained: %d of %d committed delivered", rep.Delivered, rep.Committed)
	}
	if rep.RolledBack == 0 {
		t.Error("no transaction was rolled back: the phantom check checked nothing")
	}
	for _, c := range rep.Hostile {
		if c.Expected == 0 {
			t.Errorf("no hostile row of class %s was written: its check checked nothing", c.Class)
		}
	}
	if rep.Consumers > 0 {
		if !rep.EffectsDrained || rep.EffectsApplied < rep.Committed {
			t.Fatalf("effects not drained: %d effects for %d committed messages", rep.EffectsApplied, rep.Committed)
		}
		if rep.Faults[chaos.FaultConsumerKill] == 0 {
			t.Errorf("no consumer was killed: %v", rep.Faults)
		}
	}
	if rep.Faults[chaos.FaultKill] == 0 || len(rep.Faults) < 3 {
		t.Errorf("too few faults for the check to mean anything: %v", rep.Faults)
	}
}
