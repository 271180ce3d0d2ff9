package binlog_test

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/binlog"
	"github.com/outboxgo/outbox/sink"
)

// printSink prints what it publishes: a stand-in for a broker.
type printSink struct {
	once sync.Once
	done chan struct{}
}

func (p *printSink) Publish(_ context.Context, msgs []*outbox.Record) []error {
	for _, m := range msgs {
		fmt.Printf("%s key=%s %s\n", m.Topic, m.Key, m.Payload)
	}
	p.once.Do(func() { close(p.done) })
	return make([]error, len(msgs))
}

func (*printSink) Close() error { return nil }

var _ sink.Sink = (*printSink)(nil)

// A relay tails the binary log of a MariaDB server: a message is published a moment after the
// transaction that enqueued it commits. The server needs log_bin, binlog_format=ROW and
// binlog_row_image=FULL (see the package documentation).
func Example() {
	ctx := context.Background()
	// The replication connection: its user needs REPLICATION SLAVE and REPLICATION CLIENT.
	dsn := cmp.Or(os.Getenv("OUTBOX_TEST_MYSQL_DSN"), "root@tcp(127.0.0.1:3306)/test")
	cfg, err := gomysql.ParseDSN(dsn)
	if err != nil {
		log.Fatal(err)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	// A database of its own, so that concurrent runs of this example do not collide.
	name := fmt.Sprintf("example_binlog_%d", time.Now().UnixNano())
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		log.Fatal(err)
	}
	defer db.ExecContext(ctx, "DROP DATABASE "+name) //nolint:errcheck // cleaning up
	table := name + ".outbox"

	// The tables: outbox, outbox_dead, outbox_binlog (the position).
	store, err := mysql.New(ctx, mysql.Config{DB: db, Table: table})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := store.MigrateUp(ctx); err != nil {
		log.Fatal(err)
	}
	src, err := binlog.New(binlog.Config{DSN: cfg.FormatDSN(), DB: db, Table: table})
	if err != nil {
		log.Fatal(err)
	}
	// Save the starting position before producers start writing.
	if err := src.Setup(ctx); err != nil {
		log.Fatal(err)
	}

	// A producer's transaction.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	err = store.Writer().Enqueue(ctx, tx, outbox.Message{Topic: "orders.created", Key: "order-42", Payload: []byte(`{"total":1999}`)})
	if err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}

	sk := &printSink{done: make(chan struct{})}
	r, err := relay.New(relay.Config{Source: src, Sink: sk})
	if err != nil {
		log.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	<-sk.done
	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	// Output:
	// orders.created key=order-42 {"total":1999}
}
