package producers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
)

// wmTopic is the Watermill SQL topic (messages table) of the forwarder's envelope publisher,
// as in cmd/sidebyside.
const wmTopic = "forwarder"

// BenchmarkPostgres: business INSERT + enqueue per transaction, on PostgreSQL with pgx.
//
//   - plain: this project's migrated outbox table with every trigger dropped, and a hand-written
//     INSERT (the README's columns);
//   - outbox: the tables this project's migrations create at run time (whatever wake-up
//     trigger they install), written with outbox.Writer (Store.Writer);
//   - wm-offsets, wm-queue: watermill-sql's publisher on the transaction (sql.TxFromPgx),
//     wrapped by the forwarder's envelope publisher (Watermill's documented outbox), with
//     DefaultPostgreSQLSchema or PostgreSQLQueueSchema.
func BenchmarkPostgres(b *testing.B) {
	ctx := context.Background()
	pool := pgPool(b, maxProducers(b))
	run := runID()
	var systems []*system
	var schemas []string
	b.Cleanup(func() {
		if *flagKeep {
			return
		}
		for _, s := range schemas {
			if _, err := pool.Exec(context.Background(), `DROP SCHEMA IF EXISTS "`+s+`" CASCADE`); err != nil {
				b.Errorf("dropping schema %s: %v", s, err)
			}
		}
	})
	for _, id := range pgSystemIDs {
		if !wanted(id) {
			continue
		}
		schema := "pb_" + run + "_" + strings.ReplaceAll(id, "-", "_")
		schemas = append(schemas, schema)
		s, err := pgSystem(ctx, pool, id, schema)
		if err != nil {
			b.Fatalf("setting up %s: %v", id, err)
		}
		systems = append(systems, s)
	}
	b.Cleanup(func() { // before the schemas are dropped
		for _, s := range systems {
			if s.stop != nil {
				if err := s.stop(); err != nil {
					b.Errorf("relay of %s: %v", s.id, err)
				}
			}
		}
	})
	var version string
	_ = pool.QueryRow(ctx, `SELECT current_setting('server_version') || ', synchronous_commit=' || current_setting('synchronous_commit')`).Scan(&version)
	bench(b, "PostgreSQL "+version, systems)
	for _, s := range systems {
		if s.id == "outbox" && s.sink != nil {
			pgLatency(b, pool, s)
		}
	}
}

// pgPool opens a pool of n connections, all opened up front.
func pgPool(b *testing.B, n int) *pgxpool.Pool {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(*flagPG)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns, cfg.MinConns = int32(n), int32(n)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	var wg sync.WaitGroup
	errs := make([]error, n)
	conns := make([]*pgxpool.Conn, n)
	for i := range n {
		wg.Go(func() { conns[i], errs[i] = pool.Acquire(ctx) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			b.Fatalf("PostgreSQL (%s): %v", *flagPG, errs[i])
		}
		conns[i].Release()
	}
	return pool
}

func pgSystem(ctx context.Context, pool *pgxpool.Pool, id, schema string) (*system, error) {
	q := `"` + schema + `"`
	if _, err := pool.Exec(ctx, `CREATE SCHEMA `+q); err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE `+q+`.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		customer text NOT NULL, amount_cents integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, err
	}
	insertOrder := `INSERT INTO ` + q + `.orders (customer, amount_cents) VALUES ($1, $2)`
	inTx := func(enqueue func(ctx context.Context, tx pgx.Tx, seq int) error) func(ctx context.Context, seq int) error {
		return func(ctx context.Context, seq int) error {
			tx, err := pool.Begin(ctx)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback(ctx) }()
			if _, err := tx.Exec(ctx, insertOrder, customer(seq), 4200); err != nil {
				return err
			}
			if err := enqueue(ctx, tx, seq); err != nil {
				return err
			}
			return tx.Commit(ctx)
		}
	}
	truncate := func(tables ...string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			_, err := pool.Exec(ctx, `TRUNCATE `+strings.Join(tables, ", ")+` RESTART IDENTITY`)
			return err
		}
	}
	s := &system{id: id}
	switch id {
	case "plain", "outbox", "outbox-v5":
		table := schema + ".outbox"
		store, err := postgres.New(ctx, postgres.Config{Pool: pool, Table: table})
		if err != nil {
			return nil, err
		}
		applied, err := store.MigrateUp(ctx)
		if err != nil {
			return nil, fmt.Errorf("migrating: %w", err)
		}
		if id == "outbox-v5" {
			// The wake-up before migration 6: a trigger that notifies every commit.
			if _, err := store.MigrateDown(ctx, len(applied)-5); err != nil {
				return nil, fmt.Errorf("migrating down to 5: %w", err)
			}
			applied = applied[:5]
		}
		triggers, err := pgTriggers(ctx, pool, table)
		if err != nil {
			return nil, err
		}
		s.reset = truncate(q+`.orders`, q+`.outbox`)
		if *flagRelay {
			if err := startRelay(ctx, s, table); err != nil {
				return nil, err
			}
		}
		if id == "plain" {
			for _, t := range triggers {
				if _, err := pool.Exec(ctx, `DROP TRIGGER "`+t.name+`" ON `+q+`.outbox`); err != nil {
					return nil, fmt.Errorf("dropping trigger: %w", err)
				}
			}
			// The same transaction as outbox's, so that the ratio is the wake-up's cost alone.
			s.label = "the same transactions as outbox (outbox.Writer.Enqueue) into the migrated outbox table with its triggers dropped"
			s.notes += fmt.Sprintf("%d trigger(s) dropped", len(triggers))
			w := store.Writer()
			s.tx = inTx(func(ctx context.Context, tx pgx.Tx, seq int) error {
				return w.Enqueue(ctx, tx, outbox.Message{Topic: topic, Key: key(seq), Payload: payload(seq)})
			})
			return s, nil
		}
		w := store.Writer()
		s.writer, s.insertOrder = w, insertOrder
		s.label = "business INSERT + outbox.Writer.Enqueue into the tables this project's migrations create"
		if id == "outbox-v5" {
			s.label = "the same on the schema of migrations 1–5 (the wake-up before migration 6: the trigger notifies every commit)"
		}
		defs := make([]string, len(triggers))
		for i, t := range triggers {
			defs[i] = "`" + strings.ReplaceAll(t.def, schema+".", "") + "`"
		}
		s.notes += fmt.Sprintf("migrations applied %v; triggers at run time: %s", applied, orNone(defs))
		s.tx = inTx(func(ctx context.Context, tx pgx.Tx, seq int) error {
			return w.Enqueue(ctx, tx, outbox.Message{Topic: topic, Key: key(seq), Payload: payload(seq)})
		})
		return s, nil
	default:
		table := func(topic string) string { return q + `."watermill_` + topic + `"` }
		offsets := func(topic string) string { return q + `."watermill_offsets_` + topic + `"` }
		var schemaAdapter wmsql.SchemaAdapter
		var offsetsAdapter wmsql.OffsetsAdapter
		if id == "wm-queue" {
			schemaAdapter = wmsql.PostgreSQLQueueSchema{GenerateMessagesTableName: table}
			offsetsAdapter = wmsql.PostgreSQLQueueOffsetsAdapter{DeleteOnAck: true, GenerateMessagesTableName: table}
			s.label = "business INSERT + watermill-sql publisher (PostgreSQLQueueSchema) on the transaction, forwarder envelope"
		} else {
			schemaAdapter = wmsql.DefaultPostgreSQLSchema{GenerateMessagesTableName: table}
			offsetsAdapter = wmsql.DefaultPostgreSQLOffsetsAdapter{GenerateMessagesOffsetsTableName: offsets}
			s.label = "business INSERT + watermill-sql publisher (DefaultPostgreSQLSchema) on the transaction, forwarder envelope"
		}
		sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromPgx(pool), wmsql.SubscriberConfig{SchemaAdapter: schemaAdapter, OffsetsAdapter: offsetsAdapter}, nil)
		if err != nil {
			return nil, err
		}
		if err := sub.SubscribeInitialize(wmTopic); err != nil {
			return nil, fmt.Errorf("initializing Watermill schema: %w", err)
		}
		_ = sub.Close()
		s.reset = truncate(q+`.orders`, table(wmTopic))
		if id == "wm-offsets" {
			// The forwarder's offset must restart with the messages' ids.
			s.reset = truncate(q+`.orders`, table(wmTopic), offsets(wmTopic))
		}
		if *flagRelay {
			if err := startForwarder(ctx, s, schemaAdapter, offsetsAdapter); err != nil {
				return nil, err
			}
		}
		s.tx = inTx(func(ctx context.Context, tx pgx.Tx, seq int) error {
			return wmPublish(wmsql.TxFromPgx(tx), schemaAdapter, seq)
		})
		return s, nil
	}
}

// wmPublish is Watermill's documented outbox write: an SQL publisher on the transaction,
// wrapped by the forwarder's envelope publisher; the key travels as metadata (Watermill has
// no key), as in cmd/sidebyside.
func wmPublish(tx wmsql.ContextExecutor, schema wmsql.SchemaAdapter, seq int) error {
	pub, err := wmsql.NewPublisher(tx, wmsql.PublisherConfig{SchemaAdapter: schema}, nil)
	if err != nil {
		return err
	}
	fwd := forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: wmTopic})
	m := message.NewMessage(watermill.NewUUID(), payload(seq))
	m.Metadata.Set("key", key(seq))
	return fwd.Publish(topic, m)
}

type trigger struct{ name, def string }

// pgTriggers lists the user triggers on table, with their definitions and a digest of their
// functions' bodies (so a report says which wake-up trigger it measured).
func pgTriggers(ctx context.Context, pool *pgxpool.Pool, table string) ([]trigger, error) {
	rows, err := pool.Query(ctx, `SELECT t.tgname, pg_get_triggerdef(t.oid) || ' (function body md5 ' || left(md5(p.prosrc), 8) || ')'
		FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
		WHERE t.tgrelid = $1::regclass AND NOT t.tgisinternal ORDER BY t.tgname`, table)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (trigger, error) {
		var t trigger
		err := r.Scan(&t.name, &t.def)
		return t, err
	})
}

func orNone(v []string) string {
	if len(v) == 0 {
		return "none"
	}
	return strings.Join(v, "; ")
}

// pgLatency measures, on the outbox system with its relay, commit → sink latency: idle → one
// message (after 200–600 ms without commits) and a steady 1,000 messages/s, one per
// transaction, and prints them.
func pgLatency(b *testing.B, pool *pgxpool.Pool, s *system) {
	ctx := context.Background()
	if err := s.reset(ctx); err != nil {
		b.Fatal(err)
	}
	s.sink.watch(true)
	defer s.sink.watch(false)
	commit := func() (string, time.Time, error) {
		id := outbox.NewID()
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, s.insertOrder, customer(0), 4200); err != nil {
				return err
			}
			return s.writer.Enqueue(ctx, tx, outbox.Message{ID: id, Topic: topic, Key: key(int(id[15])), Payload: payload(0)})
		})
		return id.String(), time.Now(), err
	}
	var idle []time.Duration
	for range 30 {
		time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
		id, at, err := commit()
		if err != nil {
			b.Fatal(err)
		}
		idle = append(idle, s.sink.wait(b, id).Sub(at))
	}
	type sent struct {
		id string
		at time.Time
	}
	// Four producers share a schedule of 1,000 commits/s: commit i is due i ms after the start.
	const rate, seconds = 1000, 5
	var (
		mu    sync.Mutex
		sents []sent
		wg    sync.WaitGroup
		next  atomic.Int64
	)
	start := time.Now()
	for range 4 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= rate*seconds {
					return
				}
				time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / rate)))
				id, at, err := commit()
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				sents = append(sents, sent{id, at})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var steady []time.Duration
	for _, x := range sents {
		steady = append(steady, max(s.sink.wait(b, x.id).Sub(x.at), 0))
	}
	pct := func(d []time.Duration, q float64) time.Duration {
		slices.Sort(d)
		return d[min(len(d)-1, int(float64(len(d))*q))]
	}
	fmt.Printf("\nLatency on PostgreSQL, outbox system (commit → relay's sink), the same run:\n\n"+
		"| workload | messages | p50 | p99 | max |\n|---|---|---|---|---|\n"+
		"| idle → one message (200–600 ms of silence before each) | %d | %v | %v | %v |\n"+
		"| steady, 4 producers, one message per transaction, %.0f msgs/s | %d | %v | %v | %v |\n",
		len(idle), pct(idle, 0.5), pct(idle, 0.99), pct(idle, 1),
		float64(len(steady))/elapsed.Seconds(), len(steady), pct(steady, 0.5), pct(steady, 0.99), pct(steady, 1))
}

// startRelay runs a relay over table (the poll source with its defaults: LISTEN/NOTIFY and, from
// migration 6, the wake-up gate), on a pool of its own, into a sink that discards, until s.stop
// is called.
func startRelay(ctx context.Context, s *system, table string) error {
	pool, err := pgxpool.New(ctx, *flagPG)
	if err != nil {
		return err
	}
	store, err := postgres.New(ctx, postgres.Config{Pool: pool, Table: table})
	if err != nil {
		pool.Close()
		return err
	}
	src, err := poll.New(poll.Config{Store: store})
	if err != nil {
		pool.Close()
		return err
	}
	s.sink = &latencySink{}
	r, err := relay.New(relay.Config{Source: src, Sink: s.sink})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	s.stop = func() error {
		cancel()
		defer pool.Close()
		return <-done
	}
	s.notes = "relay running; "
	return nil
}

// startForwarder runs Watermill's forwarder (watermill-sql subscriber, 10 ms poll interval as
// in cmd/sidebyside, on a pool of its own) on the system's messages table into a publisher
// that discards, until s.stop is called: the peer's counterpart of startRelay.
func startForwarder(ctx context.Context, s *system, schema wmsql.SchemaAdapter, offsets wmsql.OffsetsAdapter) error {
	pool, err := pgxpool.New(ctx, *flagPG)
	if err != nil {
		return err
	}
	sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromPgx(pool), wmsql.SubscriberConfig{
		SchemaAdapter: schema, OffsetsAdapter: offsets, PollInterval: 10 * time.Millisecond}, nil)
	if err != nil {
		pool.Close()
		return err
	}
	fwd, err := forwarder.NewForwarder(sub, discardPublisher{}, watermill.NopLogger{}, forwarder.Config{ForwarderTopic: wmTopic, CloseTimeout: 10 * time.Second})
	if err != nil {
		pool.Close()
		return err
	}
	done := make(chan error, 1)
	go func() { done <- fwd.Run(context.WithoutCancel(ctx)) }()
	s.stop = func() error {
		defer pool.Close()
		if err := fwd.Close(); err != nil {
			return err
		}
		return <-done
	}
	s.notes = "forwarder running"
	return nil
}

// discardPublisher is a Watermill publisher that accepts everything.
type discardPublisher struct{}

func (discardPublisher) Publish(string, ...*message.Message) error { return nil }
func (discardPublisher) Close() error                              { return nil }

// latencySink acknowledges everything at once and, while watching, records when it saw each
// message.
type latencySink struct {
	on   atomic.Bool
	mu   sync.Mutex
	seen map[string]time.Time
}

func (k *latencySink) watch(on bool) {
	k.mu.Lock()
	k.seen = map[string]time.Time{}
	k.mu.Unlock()
	k.on.Store(on)
}

func (k *latencySink) Publish(_ context.Context, msgs []*outbox.Record) []error {
	if k.on.Load() {
		now := time.Now()
		k.mu.Lock()
		for _, m := range msgs {
			if _, ok := k.seen[m.ID.String()]; !ok {
				k.seen[m.ID.String()] = now
			}
		}
		k.mu.Unlock()
	}
	return make([]error, len(msgs))
}

func (k *latencySink) Close() error { return nil }

// wait returns when the sink saw id, failing b after 10 s.
func (k *latencySink) wait(b *testing.B, id string) time.Time {
	deadline := time.Now().Add(10 * time.Second)
	for {
		k.mu.Lock()
		at, ok := k.seen[id]
		k.mu.Unlock()
		if ok {
			return at
		}
		if time.Now().After(deadline) {
			b.Fatalf("message %s never reached the sink", id)
		}
		time.Sleep(100 * time.Microsecond)
	}
}
