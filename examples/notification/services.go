package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/sqlite"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/natsinbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/sink"
	natssink "github.com/outboxgo/outbox/sink/nats"
)

// The order service publishes its events to this JetStream stream, subjects orders.<topic>.
const (
	ordersStream  = "ORDERS"
	ordersPrefix  = "orders."
	notifyInbox   = "notify_inbox"
	notifyDurable = "notification-service"
)

// StartNATS starts an embedded NATS JetStream server storing under dir, on 127.0.0.1:port
// (0: a free port).
func StartNATS(dir string, port int) (*server.Server, error) {
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "notification-example", Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		return nil, fmt.Errorf("starting NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("starting NATS: not ready after 10s")
	}
	return ns, nil
}

// OpenOrders opens the order service's database (orders table and outbox).
func OpenOrders(ctx context.Context, path string, logger *slog.Logger) (*sqlite.Store, *OrderService, error) {
	st, err := sqlite.New(ctx, sqlite.Config{Path: path, Logger: logger})
	if err != nil {
		return nil, nil, err
	}
	if _, err := st.MigrateUp(ctx); err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("migrating the order outbox: %w", err)
	}
	o, err := NewOrderService(ctx, st)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, o, nil
}

// RunOrderRelay relays the order service's outbox to JetStream until ctx ends.
func RunOrderRelay(ctx context.Context, st *sqlite.Store, natsURL string, logger *slog.Logger) error {
	snk, err := natssink.New(ctx, natssink.Config{
		URL: natsURL, Source: "order-service", SubjectPrefix: ordersPrefix, Logger: logger,
		Stream: &jetstream.StreamConfig{Name: ordersStream, Subjects: []string{ordersPrefix + ">"}, Storage: jetstream.FileStorage},
	})
	if err != nil {
		return fmt.Errorf("order relay: %w", err)
	}
	defer snk.Close()
	src, err := poll.New(poll.Config{Store: st, Logger: logger})
	if err != nil {
		return err
	}
	r, err := relay.New(relay.Config{Source: src, Sink: snk, SinkName: "nats", Logger: logger,
		BackoffBase: 100 * time.Millisecond, BackoffMax: 2 * time.Second, MaxProbeInterval: time.Second})
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// NotifyDB is the notification service's database: subscriptions, notifications, its inbox
// and notify_outbox.
type NotifyDB struct {
	DB    *sql.DB
	Inbox *inbox.Inbox
}

// OpenNotify opens (and migrates) the notification service's database file.
func OpenNotify(ctx context.Context, path string, logger *slog.Logger) (*NotifyDB, error) {
	db, err := sql.Open(sqlite.DriverName, sqlite.DSN(path))
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*NotifyDB, error) { db.Close(); return nil, err }
	st, err := sqlite.New(ctx, sqlite.Config{DB: db, Table: NotifyTable, Logger: logger})
	if err != nil {
		return fail(err)
	}
	if _, err := st.MigrateUp(ctx); err != nil {
		return fail(fmt.Errorf("migrating %s: %w", NotifyTable, err))
	}
	in, err := inbox.New(ctx, inbox.Config{Dialect: outbox.SQLite, DB: db, Table: notifyInbox, Consumer: notifyDurable, Logger: logger})
	if err != nil {
		return fail(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		return fail(fmt.Errorf("migrating the inbox: %w", err))
	}
	if _, err := db.ExecContext(ctx, notifySchema); err != nil {
		return fail(fmt.Errorf("creating the subscription tables: %w", err))
	}
	return &NotifyDB{DB: db, Inbox: in}, nil
}

// Close closes the database.
func (n *NotifyDB) Close() error { return n.DB.Close() }

// RunNotifier consumes order.status events from JetStream through the inbox until ctx ends.
func RunNotifier(ctx context.Context, n *NotifyDB, notifier *Notifier, natsURL string, logger *slog.Logger) error {
	a, err := natsinbox.New(natsinbox.Config{
		Inbox: n.Inbox, URL: natsURL, Name: notifyDurable, Stream: ordersStream, Durable: notifyDurable,
		SubjectPrefix: ordersPrefix, FilterSubjects: []string{ordersPrefix + StatusTopic},
		AckWait: 5 * time.Second, Batch: 20, Logger: logger,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx, notifier.Handle)
}

// PublisherConfig configures one channel publisher.
type PublisherConfig struct {
	// DBPath is the notification service's database file.
	DBPath string
	// Channel is the channel: the publisher relays topic notify.<Channel> only.
	Channel string
	// Sink delivers the channel's messages; the publisher closes it.
	Sink   sink.Sink
	Logger *slog.Logger
	// Hooks are passed to the relay (the demo counts what it publishes).
	Hooks []relay.Hook
}

// RunPublisher runs a channel publisher until ctx ends: a relay on notify_outbox restricted
// to its channel's topic, with the channel's sink. Each channel's publisher runs (and can be
// restarted, or scaled) on its own; a new channel is a new publisher.
func RunPublisher(ctx context.Context, cfg PublisherConfig) error {
	defer cfg.Sink.Close()
	st, err := sqlite.New(ctx, sqlite.Config{Path: cfg.DBPath, Table: NotifyTable, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	defer st.Close()
	src, err := poll.New(poll.Config{
		Store: st, Topics: []string{Topic(cfg.Channel)}, Logger: cfg.Logger,
		// A stable id: a restarted publisher takes its own place back at once instead of
		// sharing the keys with its dead predecessor until that one's membership expires.
		RelayID:           "publisher-" + cfg.Channel,
		HeartbeatInterval: 500 * time.Millisecond, MemberTTL: 3 * time.Second,
	})
	if err != nil {
		return err
	}
	r, err := relay.New(relay.Config{
		Source: src, Sink: cfg.Sink, SinkName: cfg.Channel, Logger: cfg.Logger, Hooks: cfg.Hooks,
		BackoffBase: 100 * time.Millisecond, BackoffMax: 2 * time.Second, MaxProbeInterval: time.Second,
		PublishTimeout: 10 * time.Second, ShutdownTimeout: 3 * time.Second,
	})
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// freeAddr returns a free 127.0.0.1 address.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0") //nolint:noctx // a port probe
	if err != nil {
		return "", err
	}
	defer l.Close()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Addr().(*net.TCPAddr).Port)), nil
}
