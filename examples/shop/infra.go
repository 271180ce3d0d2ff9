package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/dialect/sqlite"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/natsinbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	natssink "github.com/outboxgo/outbox/sink/nats"
)

// The shop's events travel on one JetStream stream: subject = subjectPrefix + topic.
const (
	streamName    = "SHOP"
	subjectPrefix = "shop."
)

// Topics.
const (
	topicPaymentCaptured = "payment.captured"
	topicPaymentDeclined = "payment.declined"
	topicListingCreated  = "listing.created"
)

// database is one service's own database: a SQLite file, or a schema of a PostgreSQL
// database. Queries use $1, $2... placeholders, which both accept.
type database struct {
	dialect outbox.Dialect
	db      *sql.DB
	// outbox is the service's outbox store, for its relay (nil for services without one).
	outbox dialect.Store
	writer *outbox.Writer
	schema string // PostgreSQL: the service's schema, "" for SQLite
	close  func()
}

// table qualifies an outbox or inbox table name with the service's schema.
func (d *database) table(name string) string {
	if d.schema == "" {
		return name
	}
	return d.schema + "." + name
}

// openDatabase opens service's database: the SQLite file path, or, when databaseURL is
// set, the schema "shop_<service>" of that PostgreSQL database (created if missing). With
// withOutbox it also opens and migrates the service's outbox table.
func openDatabase(ctx context.Context, service, path, databaseURL string, withOutbox bool, logger *slog.Logger) (*database, error) {
	return openDatabaseIn(ctx, "shop_"+service, path, databaseURL, withOutbox, logger)
}

// openDatabaseIn is openDatabase with the PostgreSQL schema named.
func openDatabaseIn(ctx context.Context, schema, path, databaseURL string, withOutbox bool, logger *slog.Logger) (*database, error) {
	if databaseURL == "" {
		return openSQLite(ctx, path, withOutbox, logger)
	}
	db, err := sql.Open("pgx", withSearchPath(databaseURL, schema))
	if err != nil {
		return nil, fmt.Errorf("opening PostgreSQL: %w", err)
	}
	// Keep the connections: database/sql keeps 2 idle by default, and a PostgreSQL
	// connection opened per query costs milliseconds.
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	if _, err := db.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+schema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("creating schema %s: %w", schema, err)
	}
	d := &database{dialect: outbox.Postgres, db: db, schema: schema, close: func() { _ = db.Close() }}
	if withOutbox {
		st, err := postgres.New(ctx, postgres.Config{URL: databaseURL, Table: d.table("outbox"), Logger: logger})
		if err != nil {
			_ = db.Close()
			return nil, err
		}
		if _, err := st.MigrateUp(ctx); err != nil {
			_ = st.Close()
			_ = db.Close()
			return nil, fmt.Errorf("migrating the outbox: %w", err)
		}
		d.outbox, d.writer = st, st.Writer()
		d.close = func() { _ = st.Close(); _ = db.Close() }
	}
	return d, nil
}

func openSQLite(ctx context.Context, path string, withOutbox bool, logger *slog.Logger) (*database, error) {
	if !withOutbox {
		db, err := sql.Open("sqlite", sqlite.DSN(path))
		if err != nil {
			return nil, fmt.Errorf("opening %s: %w", path, err)
		}
		return &database{dialect: outbox.SQLite, db: db, close: func() { _ = db.Close() }}, nil
	}
	// The store's own connections wake its relay at each commit (see dialect/sqlite).
	st, err := sqlite.New(ctx, sqlite.Config{Path: path, Logger: logger})
	if err != nil {
		return nil, err
	}
	if _, err := st.MigrateUp(ctx); err != nil {
		_ = st.Close()
		return nil, fmt.Errorf("migrating the outbox: %w", err)
	}
	// The producer, the relay and (inventory) the self-consumer all write this file. SQLite
	// takes one writer at a time, and a writer that finds the lock taken sleeps in steps of
	// up to 100 ms (its busy handler) before it tries again: with several writers in one
	// process that sleep is the tail of the latency. One connection makes them queue in the
	// pool instead, woken as soon as the connection is free; the Store and the inbox never
	// hold a connection while waiting for another (inventory's Write reads in its own
	// transaction, listen.Config.LoadTx).
	st.DB().SetMaxOpenConns(1)
	return &database{dialect: outbox.SQLite, db: st.DB(), outbox: st, writer: st.Writer(), close: func() { _ = st.Close() }}, nil
}

// withSearchPath sets the search_path of the URL's sessions to schema.
func withSearchPath(databaseURL, schema string) string {
	u, err := url.Parse(databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return databaseURL + " search_path=" + schema // a keyword/value connection string
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// exec runs the statements of a schema, one by one.
func (d *database) exec(ctx context.Context, stmts ...string) error {
	for _, s := range stmts {
		if _, err := d.db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("creating the tables: %w", err)
		}
	}
	return nil
}

// openInbox opens and migrates the service's inbox.
func (d *database) openInbox(ctx context.Context, consumer string, logger *slog.Logger, hooks ...inbox.Hook) (*inbox.Inbox, error) {
	in, err := inbox.New(ctx, inbox.Config{Dialect: d.dialect, DB: d.db, Table: d.table("inbox"), Consumer: consumer, Logger: logger, Hooks: hooks})
	if err != nil {
		return nil, err
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		return nil, fmt.Errorf("migrating the inbox: %w", err)
	}
	return in, nil
}

// ensureStream creates the SHOP stream if it is missing, retrying while NATS is
// unreachable, until ctx ends.
func ensureStream(ctx context.Context, natsURL string) error {
	for {
		err := createStream(ctx, natsURL)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("creating stream %s: %w", streamName, errors.Join(err, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func createStream(ctx context.Context, natsURL string) error {
	nc, err := natsgo.Connect(natsURL, natsgo.Name("shop-setup"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_, err = js.CreateOrUpdateStream(ctx, streamConfig())
	return err
}

func streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{Name: streamName, Subjects: []string{subjectPrefix + ">"}, Storage: jetstream.FileStorage}
}

// runRelay publishes d's outbox to NATS until ctx ends: the relay wakes at each commit.
func runRelay(ctx context.Context, d *database, natsURL, source string, logger *slog.Logger) error {
	cfg := streamConfig()
	snk, err := natssink.New(ctx, natssink.Config{URL: natsURL, Source: source, SubjectPrefix: subjectPrefix, Stream: &cfg, Logger: logger})
	if err != nil {
		return err
	}
	defer snk.Close()
	src, err := poll.New(poll.Config{Store: d.outbox, Logger: logger})
	if err != nil {
		return err
	}
	r, err := relay.New(relay.Config{Source: src, Sink: snk, Logger: logger})
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// consume runs handler on the messages of the SHOP stream whose topic matches topics (a
// NATS subject pattern: "payment.>") through in until ctx ends.
func consume(ctx context.Context, in *inbox.Inbox, natsURL, topics string, handler inbox.Handler, logger *slog.Logger) error {
	if err := ensureStream(ctx, natsURL); err != nil {
		return err
	}
	// One filter subject: NATS servers before 2.10 take no more.
	filters := []string{subjectPrefix + topics}
	a, err := natsinbox.New(natsinbox.Config{
		Inbox: in, URL: natsURL, Stream: streamName, SubjectPrefix: subjectPrefix,
		FilterSubjects: filters, AckWait: 5 * time.Second, Logger: logger,
		// One transaction for the messages that have arrived, up to 100: a backlog drains
		// in few commits, and a lone message does not wait.
		Batch: 100,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx, handler)
}

// serve serves h on addr until ctx ends.
func serve(ctx context.Context, addr string, h http.Handler) error {
	l, err := net.Listen("tcp", addr) //nolint:noctx // Listen does not block
	if err != nil {
		return err
	}
	return serveOn(ctx, l, h)
}

func serveOn(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shut)
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newLogger logs to w at WARN, or INFO when verbose.
func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// startNATS starts an in-process NATS JetStream server on 127.0.0.1:port (0: a free port)
// storing its streams in dir.
func startNATS(dir string, port int) (*server.Server, error) {
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "shop", Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		return nil, fmt.Errorf("starting NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("starting NATS: not ready within 10s (is port %d free?)", port)
	}
	return ns, nil
}

// runNATS is the nats subcommand: an in-process JetStream server, for running the services
// as separate processes without a NATS installation.
func runNATS(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:4222", "listen address (127.0.0.1 only)")
	dir := fs.String("dir", "shop-nats", "JetStream store directory")
	if err := parse(fs, args); err != nil {
		return err
	}
	_, p, err := net.SplitHostPort(*addr)
	if err != nil {
		return usageError{err.Error()}
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return usageError{"--addr: bad port " + p}
	}
	ns, err := startNATS(*dir, port)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "NATS JetStream listening on %s (store %s); Ctrl-C stops it\n", ns.ClientURL(), *dir)
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}
