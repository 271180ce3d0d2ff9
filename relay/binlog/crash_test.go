package binlog_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/mysqltest"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/binlog"
	"github.com/outboxgo/outbox/sink/nats"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// The relay processes of TestKill9 are this test binary, started again with these variables
// set: TestMain then runs childMain instead of the tests.
const (
	childEnv       = "OUTBOX_BINLOG_TEST_CHILD" // the database's DSN
	childNATSEnv   = "OUTBOX_BINLOG_TEST_NATS_URL"
	childPrefixEnv = "OUTBOX_BINLOG_TEST_SUBJECT_PREFIX"
)

// childMain runs one relay process: a binlog source on the database, publishing to NATS
// JetStream, until SIGTERM (or SIGKILL).
func childMain() int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fail := func(err error) int {
		logger.Error("child relay failed", slog.Any("error", err))
		return 1
	}
	mc, err := gomysql.ParseDSN(os.Getenv(childEnv))
	if err != nil {
		return fail(err)
	}
	conn, err := gomysql.NewConnector(mc)
	if err != nil {
		return fail(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	src, err := binlog.New(binlog.Config{
		DSN: mysqltest.DSN(), DB: db, Logger: logger,
		PositionInterval: 20 * time.Millisecond, ReconnectInterval: 100 * time.Millisecond,
	})
	if err != nil {
		return fail(err)
	}
	sk, err := nats.New(ctx, nats.Config{URL: os.Getenv(childNATSEnv), SubjectPrefix: os.Getenv(childPrefixEnv), Logger: logger})
	if err != nil {
		return fail(err)
	}
	defer sk.Close()
	r, err := relay.New(relay.Config{Source: src, Sink: sk, Logger: logger,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	if err != nil {
		return fail(err)
	}
	if err := r.Run(ctx); err != nil {
		return fail(err)
	}
	return 0
}

// relayProc is one relay process.
type relayProc struct {
	cmd *exec.Cmd
	log *logtest.Buffer
}

func startChild(t *testing.T, env []string) *relayProc {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), env...)
	log := &logtest.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return &relayProc{cmd: cmd, log: log}
}

func (p *relayProc) kill9() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// TestKill9 runs two relay processes on one outbox (one publishes, the other stands by) while
// producers commit (and roll back) transactions over many keys, and kill -9s a random one
// every few hundred milliseconds, restarting it. Everything committed must reach JetStream,
// nothing rolled back may, and first deliveries keep per-key order.
func TestKill9(t *testing.T) {
	t.Parallel()
	e := setup(t)
	nc := natstest.Connect(t)
	// A short duplicate window: the stream shows what was published again after a kill,
	// instead of JetStream dropping it by Nats-Msg-Id.
	stream, prefix := natstest.Stream(t, nc, func(c *jetstream.StreamConfig) { c.Duplicates = 100 * time.Millisecond })
	// The starting position is saved before producers start.
	if err := e.source(t, e.config(t)).Setup(context.Background()); err != nil {
		t.Fatal(err)
	}
	env := []string{childEnv + "=" + e.dsn, childNATSEnv + "=" + natstest.URL(), childPrefixEnv + "=" + prefix}
	procs := []*relayProc{startChild(t, env), startChild(t, env)}

	duration := 6 * time.Second
	if testing.Short() {
		duration = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var (
		wg                    sync.WaitGroup
		committed, rolledBack atomic.Int64
	)
	for p := range 2 {
		wg.Add(1)
		go func() { // a producer over keys of its own, a per-key sequence in every payload
			defer wg.Done()
			next := make([]int, 10)
			for ctx.Err() == nil {
				rollback := rand.IntN(5) == 0
				var ms []outbox.Message
				for range 1 + rand.IntN(10) {
					k := rand.IntN(len(next))
					key := fmt.Sprintf("p%d-k%d", p, k)
					payload := fmt.Sprintf("%s:%d", key, next[k])
					if rollback {
						payload = "rolledback:" + payload
					} else {
						next[k]++
					}
					ms = append(ms, outbox.Message{Topic: "crash", Key: key, Payload: []byte(payload)})
				}
				tx, err := e.db.BeginTx(context.Background(), nil)
				if err != nil {
					t.Errorf("begin: %v", err)
					return
				}
				if err := e.writer.Enqueue(context.Background(), tx, ms...); err != nil {
					_ = tx.Rollback()
					t.Errorf("enqueue: %v", err)
					return
				}
				if rollback {
					err = tx.Rollback()
					rolledBack.Add(int64(len(ms)))
				} else {
					err = tx.Commit()
					committed.Add(int64(len(ms)))
				}
				if err != nil {
					t.Errorf("ending transaction: %v", err)
					return
				}
				time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond)
			}
		}()
	}
	kills := 0
	for ctx.Err() == nil {
		time.Sleep(time.Duration(150+rand.IntN(350)) * time.Millisecond)
		i := rand.IntN(len(procs))
		procs[i].kill9()
		kills++
		procs[i] = startChild(t, env)
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	dups := checkDelivered(t, natstest.Receiver(t, nc, stream, prefix), int(committed.Load()), func() string {
		st, err := e.store.Stats(context.Background())
		return fmt.Sprintf("outbox %+v, %v; relay logs:\n%s\n%s", st, err, procs[0].log.String(), procs[1].log.String())
	})
	if n := e.count(t, "outbox_dead"); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
	sourcetest.WaitFor(t, 30*time.Second, "acknowledged rows deleted", func() bool { return e.rows(t) == 0 })
	t.Logf("%d committed (%d rolled back), all delivered in per-key order across %d kill -9s; %d duplicates reached the stream (JetStream dedupes within 100ms)",
		committed.Load(), rolledBack.Load(), kills, dups)
	for _, p := range procs {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relay exited with %v after SIGTERM\n%s", err, p.log.String())
			}
		case <-time.After(20 * time.Second):
			t.Errorf("relay still running 20s after SIGTERM\n%s", p.log.String())
		}
	}
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
		if strings.HasPrefix(string(m.Payload), "rolledback") {
			t.Fatalf("received %q, enqueued in a transaction that rolled back", m.Payload)
		}
		key, n, _ := strings.Cut(string(m.Payload), ":")
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
