package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/service"
)

// TestCanary checks the checker: a run into which the test slips a committed message that
// never reaches the outbox (lost), a rolled-back message published behind the relays' back
// (phantom) and two messages of one key published in the wrong order must report exactly
// those, and fail.
func TestCanary(t *testing.T) {
	t.Parallel()
	service.Require(t, "PostgreSQL")
	// Built for this test alone (from the build cache): -count=N runs it again.
	bin := filepath.Join(t.TempDir(), "outbox")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/outboxgo/outbox/cmd/outbox").CombinedOutput(); err != nil {
		t.Fatalf("building the outbox command: %v\n%s", err, out)
	}
	cfg := Config{
		Sink: SinkNATS, Duration: 3 * time.Second, Rate: 100, Keys: 10, Relays: 2,
		Faults: []string{FaultKill}, StableRelayIDs: true, OutboxBinary: bin, DrainTimeout: 10 * time.Second,
	}
	cfg.hook = func(ctx context.Context, r *run, led *ledger) error {
		// A key no producer uses.
		led.mu.Lock()
		key := len(led.maxSeq)
		led.maxSeq = append(led.maxSeq, -1)
		led.mu.Unlock()
		mk := func(seq int, state uint8) (int, entry) {
			e := entry{id: outbox.NewID(), key: int32(key), seq: int32(seq), txStart: true}
			i := led.add([]entry{e})
			led.settle(i, 1, state, time.Now())
			return i, e
		}
		lostIdx, lost := mk(0, stateCommitted)
		phIdx, ph := mk(-1, stateRolledBack)
		bIdx, b := mk(1, stateCommitted)
		cIdx, c := mk(2, stateCommitted)
		// Business rows for the committed ones, and no outbox row: "lost".
		var o orders
		for _, x := range []struct {
			i int
			e entry
		}{{lostIdx, lost}, {bIdx, b}, {cIdx, c}} {
			o.idx = append(o.idx, int64(x.i))
			o.ids = append(o.ids, x.e.id.String())
			o.keys = append(o.keys, keyName(key))
			o.seqs = append(o.seqs, x.e.seq)
		}
		tx, err := r.db.begin(ctx)
		if err != nil {
			return err
		}
		if err := tx.write(ctx, o, nil); err != nil {
			_ = tx.rollback(ctx)
			return err
		}
		if err := tx.commit(ctx); err != nil {
			return err
		}
		nc, err := natsgo.Connect(r.brk.(*natsBroker).url())
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		publish := func(i int, e entry) error {
			m := natsgo.NewMsg(natsPrefix + outboxTopic)
			m.Header.Set("ce-id", e.id.String())
			m.Data = makePayload(i, key, int(e.seq), e.seq < 0, 64)
			_, err := js.PublishMsg(ctx, m)
			return err
		}
		for _, p := range []struct {
			i int
			e entry
		}{{phIdx, ph}, {cIdx, c}, {bIdx, b}} {
			if err := publish(p.i, p.e); err != nil {
				return err
			}
		}
		return nil
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The run keeps the schema and the work dir of a failed run for inspection.
		if rep.WorkDir != "" {
			_ = os.RemoveAll(rep.WorkDir)
		}
		dropKeptSchema(t, cfg.DatabaseURL, rep.OutboxTable)
	})
	if rep.OK() {
		t.Fatal("the run reports no violation")
	}
	if rep.Lost != 1 || rep.LostGone != 1 || rep.Phantom != 1 || rep.PhantomRolledBack != 1 || rep.OrderViolations != 1 || rep.Unknown != 0 {
		var b strings.Builder
		rep.WriteText(&b)
		t.Log(b.String())
		t.Fatalf("lost %d (gone %d), phantom %d (rolled back %d), order violations %d, unknown %d; want 1 (1), 1 (1), 1, 0",
			rep.Lost, rep.LostGone, rep.Phantom, rep.PhantomRolledBack, rep.OrderViolations, rep.Unknown)
	}
	if rep.LostSample[0].Where != "gone" || rep.OrderViolationSample[0].Seq != 1 || rep.OrderViolationSample[0].AfterSeq != 2 {
		t.Fatalf("samples: %+v %+v", rep.LostSample, rep.OrderViolationSample)
	}
	if rep.Committed < 100 || rep.Delivered != rep.Committed-1 {
		t.Fatalf("committed %d, delivered %d", rep.Committed, rep.Delivered)
	}
}

// dropKeptSchema drops the schema of table, which the run kept because it found violations.
func dropKeptSchema(t *testing.T, dbURL, table string) {
	c := Config{DatabaseURL: dbURL}
	c.setDefaults()
	schema, _, ok := strings.Cut(table, ".")
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DatabaseURL)
	if err != nil {
		t.Errorf("dropping schema %s: %v", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`); err != nil {
		t.Errorf("dropping schema %s: %v", schema, err)
	}
}

// TestSweep: re-reading a broker returns everything it stores, once, whatever the consumer
// saw. The checker relies on it to tell a message the consumer missed from a lost one.
func TestSweep(t *testing.T) {
	t.Parallel()
	const n = 300
	ids := map[string]bool{}
	for range n {
		ids[outbox.NewID().String()] = true
	}
	check := func(t *testing.T, b broker) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		got := map[string]int{}
		if err := b.sweep(ctx, func(d delivery) { got[d.id]++ }); err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Fatalf("swept %d distinct messages of %d", len(got), n)
		}
		for id, c := range got {
			if !ids[id] || c != 1 {
				t.Fatalf("message %s swept %d times (ours: %v)", id, c, ids[id])
			}
		}
	}
	t.Run("nats", func(t *testing.T) {
		t.Parallel()
		b, err := startNATS(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer b.close()
		nc, err := natsgo.Connect(b.url())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		for id := range ids {
			m := natsgo.NewMsg(natsPrefix + outboxTopic)
			m.Header.Set("ce-id", id)
			if _, err := js.PublishMsg(context.Background(), m); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.restart(context.Background(), 0); err != nil { // the store survives a restart
			t.Fatal(err)
		}
		check(t, b)
	})
	t.Run("kafka", func(t *testing.T) {
		t.Parallel()
		b, err := startKafka(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer b.close()
		cl, err := kgo.NewClient(kgo.SeedBrokers(b.addrs()...), kgo.DefaultProduceTopic(kafkaTopic))
		if err != nil {
			t.Fatal(err)
		}
		for id := range ids {
			r := &kgo.Record{Key: []byte(id), Headers: []kgo.RecordHeader{{Key: "ce_id", Value: []byte(id)}}}
			if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		cl.Close()
		if err := b.restart(context.Background(), 0); err != nil {
			t.Fatal(err)
		}
		check(t, b)
	})
}

// TestConsumerCanary checks the effects check: after a clean run with a consumer process,
// the test copies one key's first effect (a message applied twice), deletes another key's
// last one (a message without its effect) and swaps the apply numbers of a third key's first
// two effects (applied out of order); the report must count exactly those, and fail.
func TestConsumerCanary(t *testing.T) {
	t.Parallel()
	service.Require(t, "PostgreSQL")
	dir := t.TempDir()
	bins := map[string]string{"outbox": "github.com/outboxgo/outbox/cmd/outbox", "consumer": "github.com/outboxgo/outbox/chaos/cmd/outbox-chaos-consumer"}
	for name, pkg := range bins {
		bins[name] = filepath.Join(dir, name)
		if out, err := exec.Command("go", "build", "-o", bins[name], pkg).CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", pkg, err, out)
		}
	}
	cfg := Config{
		Sink: SinkKafka, Duration: 3 * time.Second, Rate: 100, Keys: 10, Relays: 1, Consumers: 1,
		Faults: []string{FaultKill}, StableRelayIDs: true, OutboxBinary: bins["outbox"], ConsumerBinary: bins["consumer"],
		DrainTimeout: 30 * time.Second,
	}
	cfg.beforeVerify = func(ctx context.Context, r *run) error {
		_, effects, _ := r.db.consumerTables()
		pool := r.db.(*postgresDB).pool
		for _, q := range []string{
			`INSERT INTO ` + effects + ` SELECT * FROM ` + effects + ` WHERE key = 'k0' ORDER BY apply LIMIT 1`,
			`DELETE FROM ` + effects + ` WHERE key = 'k1' AND apply = (SELECT max(apply) FROM ` + effects + ` WHERE key = 'k1')`,
			`UPDATE ` + effects + ` SET apply = 3 - apply WHERE key = 'k2' AND apply IN (1, 2)`,
		} {
			if tag, err := pool.Exec(ctx, q); err != nil || tag.RowsAffected() == 0 {
				return fmt.Errorf("%s: %v (%d rows)", q, err, tag.RowsAffected())
			}
		}
		return nil
	}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if rep.WorkDir != "" {
			_ = os.RemoveAll(rep.WorkDir)
		}
		dropKeptSchema(t, cfg.DatabaseURL, rep.OutboxTable)
	})
	var b strings.Builder
	rep.WriteText(&b)
	if rep.OK() {
		t.Fatalf("the run reports no violation:\n%s", b.String())
	}
	if rep.EffectsDouble != 1 || rep.EffectsDoubleRows != 1 || rep.EffectsMissing != 1 || rep.EffectsOutOfOrder != 1 || rep.EffectsUnknown != 0 {
		t.Fatalf("double %d (+%d), missing %d, out of order %d, unknown %d; want 1 (+1), 1, 1, 0:\n%s",
			rep.EffectsDouble, rep.EffectsDoubleRows, rep.EffectsMissing, rep.EffectsOutOfOrder, rep.EffectsUnknown, b.String())
	}
	if got := rep.Violations(); len(got) != 3 || rep.Lost != 0 || rep.OrderViolations != 0 {
		t.Fatalf("violations %v, want the three effect ones only", got)
	}
	if rep.Committed < 100 || rep.EffectsApplied != rep.Committed {
		t.Fatalf("committed %d, effects %d", rep.Committed, rep.EffectsApplied)
	}
}
