package producers

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/go-sql-driver/mysql"

	"github.com/outboxgo/outbox"
	outboxmysql "github.com/outboxgo/outbox/dialect/mysql"
)

// BenchmarkMySQL: business INSERT + enqueue per transaction, on MariaDB/MySQL with
// database/sql (go-sql-driver/mysql). No wake-up trigger there: relays poll.
//
//   - plain: this project's migrated outbox table with every trigger dropped (the message_id
//     canonicalising one), and a hand-written INSERT (the README's columns);
//   - outbox: the tables this project's migrations create at run time, written with
//     outbox.Writer (Store.Writer);
//   - wm-offsets, wm-queue: watermill-sql's publisher on the transaction (sql.TxFromStdSQL),
//     forwarder envelope, with DefaultMySQLSchema or MySQLQueueSchema (new in v4.1).
func BenchmarkMySQL(b *testing.B) {
	ctx := context.Background()
	db := mysqlDB(b, maxProducers(b))
	run := runID()
	var systems []*system
	var databases []string
	b.Cleanup(func() {
		if *flagKeep {
			return
		}
		for _, d := range databases {
			if _, err := db.ExecContext(context.Background(), "DROP DATABASE IF EXISTS `"+d+"`"); err != nil {
				b.Errorf("dropping database %s: %v", d, err)
			}
		}
	})
	for _, id := range systemIDs {
		if !wanted(id) {
			continue
		}
		name := "pb_" + run + "_" + strings.ReplaceAll(id, "-", "_")
		databases = append(databases, name)
		s, err := mysqlSystem(ctx, db, id, name)
		if err != nil {
			b.Fatalf("setting up %s: %v", id, err)
		}
		systems = append(systems, s)
	}
	var version, flush string
	_ = db.QueryRowContext(ctx, `SELECT VERSION(), @@innodb_flush_log_at_trx_commit`).Scan(&version, &flush)
	bench(b, fmt.Sprintf("MySQL %s, innodb_flush_log_at_trx_commit=%s, interpolateParams=%v", version, flush, *flagInterp), systems)
}

// mysqlDB opens a pool of n connections, all opened up front.
func mysqlDB(b *testing.B, n int) *sql.DB {
	ctx := context.Background()
	cfg, err := mysql.ParseDSN(*flagMySQL)
	if err != nil {
		b.Fatal(err)
	}
	if *flagInterp {
		cfg.InterpolateParams = true
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		b.Fatal(err)
	}
	db := sql.OpenDB(conn)
	b.Cleanup(func() { _ = db.Close() })
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	var wg sync.WaitGroup
	errs := make([]error, n)
	conns := make([]*sql.Conn, n)
	for i := range n {
		wg.Go(func() {
			if conns[i], errs[i] = db.Conn(ctx); errs[i] == nil {
				errs[i] = conns[i].PingContext(ctx)
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			b.Fatalf("MySQL: %v", errs[i])
		}
		_ = conns[i].Close()
	}
	return db
}

func mysqlSystem(ctx context.Context, db *sql.DB, id, name string) (*system, error) {
	q := "`" + name + "`"
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+q); err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+q+".orders (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, "+
		"customer VARCHAR(64) NOT NULL, amount_cents INT NOT NULL, created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) "+
		"ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"); err != nil {
		return nil, err
	}
	insertOrder := "INSERT INTO " + q + ".orders (customer, amount_cents) VALUES (?, ?)"
	inTx := func(enqueue func(ctx context.Context, tx *sql.Tx, seq int) error) func(ctx context.Context, seq int) error {
		return func(ctx context.Context, seq int) error {
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback() }()
			if _, err := tx.ExecContext(ctx, insertOrder, customer(seq), 4200); err != nil {
				return err
			}
			if err := enqueue(ctx, tx, seq); err != nil {
				return err
			}
			return tx.Commit()
		}
	}
	truncate := func(tables ...string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			for _, t := range tables {
				if _, err := db.ExecContext(ctx, "TRUNCATE TABLE "+t); err != nil {
					return err
				}
			}
			return nil
		}
	}
	s := &system{id: id}
	switch id {
	case "plain", "outbox":
		store, err := outboxmysql.New(ctx, outboxmysql.Config{DB: db, Table: name + ".outbox"})
		if err != nil {
			return nil, err
		}
		applied, err := store.MigrateUp(ctx)
		if err != nil {
			return nil, fmt.Errorf("migrating: %w", err)
		}
		triggers, err := mysqlTriggers(ctx, db, name, "outbox")
		if err != nil {
			return nil, err
		}
		s.reset = truncate(q+".orders", q+".outbox")
		if id == "plain" {
			for _, t := range triggers {
				if _, err := db.ExecContext(ctx, "DROP TRIGGER "+q+".`"+t.name+"`"); err != nil {
					return nil, fmt.Errorf("dropping trigger: %w", err)
				}
			}
			s.label = "business INSERT + hand-written INSERT into the migrated outbox table with its triggers dropped"
			s.notes = fmt.Sprintf("%d trigger(s) dropped", len(triggers))
			insert := "INSERT INTO " + q + ".outbox (message_id, topic, `key`, type, payload, headers) VALUES (?, ?, ?, '', ?, '{}')"
			s.tx = inTx(func(ctx context.Context, tx *sql.Tx, seq int) error {
				_, err := tx.ExecContext(ctx, insert, outbox.NewID().String(), topic, key(seq), payload(seq))
				return err
			})
			return s, nil
		}
		w := store.Writer()
		s.label = "business INSERT + outbox.Writer.Enqueue into the tables this project's migrations create"
		defs := make([]string, len(triggers))
		for i, t := range triggers {
			defs[i] = t.def
		}
		s.notes = fmt.Sprintf("migrations applied %v; triggers at run time: %s", applied, orNone(defs))
		s.tx = inTx(func(ctx context.Context, tx *sql.Tx, seq int) error {
			return w.Enqueue(ctx, tx, outbox.Message{Topic: topic, Key: key(seq), Payload: payload(seq)})
		})
		return s, nil
	default:
		table := func(topic string) string { return q + ".`watermill_" + topic + "`" }
		offsets := func(topic string) string { return q + ".`watermill_offsets_" + topic + "`" }
		var schemaAdapter wmsql.SchemaAdapter
		var offsetsAdapter wmsql.OffsetsAdapter
		if id == "wm-queue" {
			schemaAdapter = wmsql.MySQLQueueSchema{GenerateMessagesTableName: table}
			offsetsAdapter = wmsql.MySQLQueueOffsetsAdapter{DeleteOnAck: true, GenerateMessagesTableName: table}
			s.label = "business INSERT + watermill-sql publisher (MySQLQueueSchema) on the transaction, forwarder envelope"
		} else {
			schemaAdapter = wmsql.DefaultMySQLSchema{GenerateMessagesTableName: table}
			offsetsAdapter = wmsql.DefaultMySQLOffsetsAdapter{GenerateMessagesOffsetsTableName: offsets}
			s.label = "business INSERT + watermill-sql publisher (DefaultMySQLSchema) on the transaction, forwarder envelope"
		}
		sub, err := wmsql.NewSubscriber(wmsql.BeginnerFromStdSQL(db), wmsql.SubscriberConfig{SchemaAdapter: schemaAdapter, OffsetsAdapter: offsetsAdapter}, nil)
		if err != nil {
			return nil, err
		}
		if err := sub.SubscribeInitialize(wmTopic); err != nil {
			return nil, fmt.Errorf("initializing Watermill schema: %w", err)
		}
		_ = sub.Close()
		s.reset = truncate(q+".orders", table(wmTopic))
		s.tx = inTx(func(ctx context.Context, tx *sql.Tx, seq int) error {
			return wmPublish(wmsql.TxFromStdSQL(tx), schemaAdapter, seq)
		})
		return s, nil
	}
}

// mysqlTriggers lists the triggers on database.table.
func mysqlTriggers(ctx context.Context, db *sql.DB, database, table string) ([]trigger, error) {
	rows, err := db.QueryContext(ctx, `SELECT TRIGGER_NAME, CONCAT(ACTION_TIMING, ' ', EVENT_MANIPULATION, ' FOR EACH ', ACTION_ORIENTATION, ' (body md5 ', LEFT(MD5(ACTION_STATEMENT), 8), ')')
		FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = ? AND EVENT_OBJECT_TABLE = ? ORDER BY TRIGGER_NAME`, database, table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []trigger
	for rows.Next() {
		var t trigger
		if err := rows.Scan(&t.name, &t.def); err != nil {
			return nil, err
		}
		t.def = "`" + t.name + "` " + t.def
		out = append(out, t)
	}
	return out, rows.Err()
}
