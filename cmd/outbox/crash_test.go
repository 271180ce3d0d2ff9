package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// buildBinary compiles the outbox command once per test binary run.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "outbox-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "outbox")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// relayProc is one `outbox relay` process.
type relayProc struct {
	cmd *exec.Cmd
	log *logtest.Buffer
}

func startRelayProc(t *testing.T, bin string, env []string) *relayProc {
	t.Helper()
	cmd := exec.Command(bin, "relay")
	cmd.Env = append(os.Environ(), env...)
	log := &logtest.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &relayProc{cmd: cmd, log: log}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return p
}

// TestKill9RelayProcesses runs three relay processes on one table while a producer commits
// over many keys, and kill -9s a random relay every few hundred milliseconds (restarting it).
// Everything committed must reach JetStream, in per-key order on first delivery.
func TestKill9RelayProcesses(t *testing.T) {
	t.Parallel()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	pool, schema := pgtest.Schema(t)
	table := schema + ".outbox"
	store, err := postgres.New(context.Background(), postgres.Config{Pool: pool, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.MigrateUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	nc := natstest.Connect(t)
	stream, prefix := natstest.Stream(t, nc)
	env := func(i int) []string {
		return []string{
			"OUTBOX_DATABASE_URL=" + pgtest.URL(),
			"OUTBOX_TABLE=" + table,
			"OUTBOX_SINK_TYPE=nats",
			"OUTBOX_SINK_NATS_URL=" + natstest.URL(),
			"OUTBOX_SINK_NATS_SUBJECT_PREFIX=" + prefix,
			"OUTBOX_POLL_INTERVAL=20ms",
			"OUTBOX_POLL_BATCH_SIZE=50",
			"OUTBOX_RELAY_BACKOFF_BASE=50ms",
			"OUTBOX_RELAY_BACKOFF_MAX=1s",
			"OUTBOX_RELAY_ID=relay-" + strconv.Itoa(i),
			"OUTBOX_LOG_LEVEL=warn",
		}
	}
	procs := make([]*relayProc, 3)
	for i := range procs {
		procs[i] = startRelayProc(t, bin, env(i))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	var (
		wg        sync.WaitGroup
		committed int
	)
	wg.Add(1)
	go func() { // producer: 40 keys, a per-key sequence in every payload
		defer wg.Done()
		for seq := 0; ctx.Err() == nil; seq++ {
			msgs := make([]outbox.Message, 40)
			for k := range msgs {
				key := "k" + strconv.Itoa(k)
				msgs[k] = outbox.Message{Topic: "crash", Key: key, Payload: fmt.Appendf(nil, "%s:%d", key, seq)}
			}
			if err := store.Enqueue(context.Background(), msgs...); err != nil {
				t.Errorf("enqueue: %v", err)
				return
			}
			committed += len(msgs)
			time.Sleep(10 * time.Millisecond)
		}
	}()
	kills := 0
	for ctx.Err() == nil {
		time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
		i := rand.IntN(len(procs))
		_ = procs[i].cmd.Process.Signal(syscall.SIGKILL)
		_ = procs[i].cmd.Wait()
		kills++
		procs[i] = startRelayProc(t, bin, env(i))
	}
	wg.Wait()

	dups := checkDelivered(t, natstest.Receiver(t, nc, stream, prefix), committed, func() string {
		st, err := store.Stats(context.Background())
		return fmt.Sprintf("outbox %+v, %v", st, err)
	})
	st, err := store.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.DeadLetters != 0 {
		t.Fatalf("%d dead letters", st.DeadLetters)
	}
	t.Logf("%d committed, all delivered in per-key order across %d kill -9s; %d duplicates (%.2f%%)",
		committed, kills, dups, 100*float64(dups)/float64(committed))
}

// checkDelivered receives until committed distinct messages arrived, each payload "key:seq"
// with seq counting from 0 per key, and fails the test on a gap in a key's sequence (a lost
// or reordered message) or a payload starting with "rolledback". It returns the duplicates.
func checkDelivered(t *testing.T, rcv sinktest.Receiver, committed int, diag func() string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	next := map[string]int{}
	seen := map[string]bool{}
	dups := 0
	for len(seen) < committed {
		m, err := rcv.Receive(ctx)
		if err != nil {
			t.Fatalf("received %d of %d committed messages (lost?): %v; %s", len(seen), committed, err, diag())
		}
		if seen[m.ID] {
			dups++
			continue
		}
		seen[m.ID] = true
		key, n, _ := strings.Cut(string(m.Payload), ":")
		if key == "rolledback" {
			t.Fatalf("received %q, enqueued in a transaction that rolled back", m.Payload)
		}
		want := next[key]
		if got, _ := strconv.Atoi(n); got != want {
			t.Fatalf("key %s: received seq %s before %d (order violated)", key, n, want)
		}
		next[key] = want + 1
	}
	// Anything after the last expected message must be a duplicate, never a phantom.
	tail, cancelTail := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancelTail()
	for {
		m, err := rcv.Receive(tail)
		if err != nil {
			return dups
		}
		if !seen[m.ID] {
			t.Fatalf("received %q (id %s) beyond the %d committed messages", m.Payload, m.ID, committed)
		}
		dups++
	}
}

// TestRelaySIGTERMDrainsAndExits: the daemon stops cleanly on SIGTERM, releasing its work.
func TestRelaySIGTERMExitsCleanly(t *testing.T) {
	t.Parallel()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	pool, schema := pgtest.Schema(t)
	table := schema + ".outbox"
	store, err := postgres.New(context.Background(), postgres.Config{Pool: pool, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.MigrateUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	nc := natstest.Connect(t)
	_, prefix := natstest.Stream(t, nc)
	p := startRelayProc(t, bin, []string{
		"OUTBOX_DATABASE_URL=" + pgtest.URL(), "OUTBOX_TABLE=" + table,
		"OUTBOX_SINK_NATS_URL=" + natstest.URL(), "OUTBOX_SINK_NATS_SUBJECT_PREFIX=" + prefix,
	})
	for i := range 20 {
		if err := store.Enqueue(context.Background(), outbox.Message{Topic: "term", Key: strconv.Itoa(i % 3)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := store.Stats(context.Background())
		if err == nil && st.Pending == 0 && st.Relays == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay did not drain: %+v, %v\n%s", st, err, p.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("relay exited with %v after SIGTERM\n%s", err, p.log.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("relay still running 20s after SIGTERM\n%s", p.log.String())
	}
	st, err := store.Stats(context.Background())
	if err != nil || st.Relays != 0 {
		t.Fatalf("after SIGTERM: %+v, %v: the relay should have left the membership", st, err)
	}
}
