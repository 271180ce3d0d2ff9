package producers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
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
	for _, id := range systemIDs {
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
	var version string
	_ = pool.QueryRow(ctx, `SELECT current_setting('server_version') || ', synchronous_commit=' || current_setting('synchronous_commit')`).Scan(&version)
	bench(b, "PostgreSQL "+version, systems)
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
	case "plain", "outbox":
		table := schema + ".outbox"
		store, err := postgres.New(ctx, postgres.Config{Pool: pool, Table: table})
		if err != nil {
			return nil, err
		}
		applied, err := store.MigrateUp(ctx)
		if err != nil {
			return nil, fmt.Errorf("migrating: %w", err)
		}
		triggers, err := pgTriggers(ctx, pool, table)
		if err != nil {
			return nil, err
		}
		s.reset = truncate(q+`.orders`, q+`.outbox`)
		if id == "plain" {
			for _, t := range triggers {
				if _, err := pool.Exec(ctx, `DROP TRIGGER "`+t.name+`" ON `+q+`.outbox`); err != nil {
					return nil, fmt.Errorf("dropping trigger: %w", err)
				}
			}
			s.label = "business INSERT + hand-written INSERT into the migrated outbox table with its triggers dropped"
			s.notes = fmt.Sprintf("%d trigger(s) dropped", len(triggers))
			insert := `INSERT INTO ` + q + `.outbox (message_id, topic, key, type, payload, headers) VALUES ($1, $2, $3, '', $4, '{}')`
			s.tx = inTx(func(ctx context.Context, tx pgx.Tx, seq int) error {
				_, err := tx.Exec(ctx, insert, outbox.NewID().String(), topic, key(seq), payload(seq))
				return err
			})
			return s, nil
		}
		w := store.Writer()
		s.label = "business INSERT + outbox.Writer.Enqueue into the tables this project's migrations create"
		defs := make([]string, len(triggers))
		for i, t := range triggers {
			defs[i] = "`" + strings.ReplaceAll(t.def, schema+".", "") + "`"
		}
		s.notes = fmt.Sprintf("migrations applied %v; triggers at run time: %s", applied, orNone(defs))
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
