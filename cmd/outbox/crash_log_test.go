package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/testutil/mysqltest"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

// TestKill9WALRelay runs `outbox relay --source wal` processes on one slot (one reads, the
// other waits as a hot standby) through kill -9s at random moments, in both storage modes.
func TestKill9WALRelay(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"table", "logical"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			pool, schema := pgtest.Schema(t)
			table := schema + ".outbox"
			store, err := postgres.New(context.Background(), postgres.Config{Pool: pool, Table: table})
			if err != nil {
				t.Fatal(err)
			}
			slot := "outbox_cmd_" + schema[2:]
			if len(slot) > 63 {
				slot = slot[:63]
			}
			// Registered after the schema's cleanup, so it runs before it, and before the
			// relays' (registered later, run earlier) have killed them.
			t.Cleanup(func() { pgtest.DropSlot(t, pool, slot) })
			logical, err := outbox.NewLogicalWriter(outbox.LogicalWriterConfig{Prefix: slot})
			if err != nil {
				t.Fatal(err)
			}
			testKill9LogSource(t, kill9Case{
				store: store,
				env: []string{
					"OUTBOX_DATABASE_URL=" + pgtest.URL(),
					"OUTBOX_TABLE=" + table,
					"OUTBOX_SOURCE=wal",
					"OUTBOX_WAL_SLOT=" + slot,
					"OUTBOX_WAL_MODE=" + mode,
					"OUTBOX_WAL_MESSAGE_PREFIX=" + slot, // logical messages are database-wide: this test's own
					"OUTBOX_WAL_BATCH_SIZE=50",
				},
				rowsDeleted: mode == "table",
				commit: func(ctx context.Context, msgs []outbox.Message, rollback bool) error {
					return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
						var err error
						if mode == "logical" {
							err = logical.Enqueue(ctx, tx, msgs...)
						} else {
							err = store.Writer().Enqueue(ctx, tx, msgs...)
						}
						if err == nil && rollback {
							err = errRollback
						}
						return err
					})
				},
			})
		})
	}
}

// TestKill9BinlogRelay does the same with `outbox relay --source binlog` on MariaDB.
func TestKill9BinlogRelay(t *testing.T) {
	t.Parallel()
	db, dsn, _ := mysqltest.Database(t)
	store, err := mysql.New(context.Background(), mysql.Config{DB: db})
	if err != nil {
		t.Fatal(err)
	}
	testKill9LogSource(t, kill9Case{
		store: store,
		env: []string{
			"OUTBOX_DATABASE_URL=" + mysqlURL(t, dsn),
			"OUTBOX_SOURCE=binlog",
			"OUTBOX_BINLOG_BATCH_SIZE=50",
		},
		rowsDeleted: true,
		commit: func(ctx context.Context, msgs []outbox.Message, rollback bool) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if err := store.Writer().Enqueue(ctx, tx, msgs...); err != nil || rollback {
				_ = tx.Rollback()
				if err == nil {
					err = errRollback
				}
				return err
			}
			return tx.Commit()
		},
	})
}

var errRollback = fmt.Errorf("rolled back on purpose")

// mysqlURL turns a go-sql-driver DSN into the mysql:// URL the command takes.
func mysqlURL(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u := url.URL{Scheme: "mysql", Host: cfg.Addr, Path: "/" + cfg.DBName}
	if cfg.Passwd != "" {
		u.User = url.UserPassword(cfg.User, cfg.Passwd)
	} else {
		u.User = url.User(cfg.User)
	}
	return u.String()
}

// kill9Case is one source under testKill9LogSource.
type kill9Case struct {
	store dialect.Store
	env   []string // the database and source settings
	// commit runs one transaction enqueuing msgs, rolled back when rollback is set (then
	// returning errRollback).
	commit func(ctx context.Context, msgs []outbox.Message, rollback bool) error
	// rowsDeleted: every row of the table is deleted once acknowledged.
	rowsDeleted bool
}

// testKill9LogSource runs two relay processes of a log source (one reads, the other waits as
// a hot standby) while two producers commit over 40 keys — a fifth of the transactions
// rolling back — and kill -9s a random relay every few hundred milliseconds, restarting it.
// Every committed message must reach JetStream, in per-key order on first delivery, and no
// rolled-back one. `outbox migrate up` prepares the source first: what commits before a WAL
// slot exists is not in its stream.
func testKill9LogSource(t *testing.T, c kill9Case) {
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	nc := natstest.Connect(t)
	stream, prefix := natstest.Stream(t, nc)
	env := append(c.env,
		"OUTBOX_SINK_TYPE=nats",
		"OUTBOX_SINK_NATS_URL="+natstest.URL(),
		"OUTBOX_SINK_NATS_SUBJECT_PREFIX="+prefix,
		"OUTBOX_RELAY_BACKOFF_BASE=50ms",
		"OUTBOX_RELAY_BACKOFF_MAX=1s",
		"OUTBOX_LOG_LEVEL=warn",
	)
	setup := exec.Command(bin, "migrate", "up")
	setup.Env = append(os.Environ(), env...)
	if out, err := setup.CombinedOutput(); err != nil {
		t.Fatalf("outbox migrate up: %v\n%s", err, out)
	}
	procs := []*relayProc{startRelayProc(t, bin, env), startRelayProc(t, bin, env)}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		committed int
	)
	for p := range 2 { // 20 keys each, a per-key sequence in every payload
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; ctx.Err() == nil; {
				rollback := rand.IntN(5) == 0
				msgs := make([]outbox.Message, 20)
				for k := range msgs {
					key := fmt.Sprintf("p%dk%d", p, k)
					payload := fmt.Appendf(nil, "%s:%d", key, seq)
					if rollback {
						payload = fmt.Appendf(nil, "rolledback:%s", key)
					}
					msgs[k] = outbox.Message{Topic: "crash", Key: key, Payload: payload}
				}
				err := c.commit(context.Background(), msgs, rollback)
				switch {
				case rollback && err == errRollback:
					continue
				case err != nil:
					t.Errorf("producer: %v", err)
					return
				}
				seq++
				mu.Lock()
				committed += len(msgs)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	kills := 0
	for ctx.Err() == nil {
		time.Sleep(time.Duration(200+rand.IntN(500)) * time.Millisecond)
		i := rand.IntN(len(procs))
		_ = procs[i].cmd.Process.Signal(syscall.SIGKILL)
		_ = procs[i].cmd.Wait()
		kills++
		procs[i] = startRelayProc(t, bin, env)
	}
	wg.Wait()

	dups := checkDelivered(t, natstest.Receiver(t, nc, stream, prefix), committed, func() string {
		st, err := c.store.Stats(context.Background())
		return fmt.Sprintf("outbox %+v, %v; relay logs:\n%s\n%s", st, err, procs[0].log.String(), procs[1].log.String())
	})
	st, err := c.store.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.DeadLetters != 0 {
		t.Fatalf("%d dead letters", st.DeadLetters)
	}
	if c.rowsDeleted {
		// Every row was acknowledged, so the relay deletes it (the last deletes may lag).
		waitFor(t, func() bool {
			st, err := c.store.Stats(context.Background())
			return err == nil && st.Pending == 0
		})
	}
	for _, p := range procs { // a graceful stop saves the position and releases the slot or lock
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		if err := p.cmd.Wait(); err != nil {
			t.Errorf("relay exited with %v after SIGTERM\n%s", err, p.log.String())
		}
	}
	t.Logf("%d committed, all delivered in per-key order across %d kill -9s; %d duplicates (%.2f%%); rolled-back ones never",
		committed, kills, dups, 100*float64(dups)/float64(committed))
}
