package main

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
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

// DefaultStream is the JetStream stream the order service publishes its events to, on
// subjects <stream>.<topic>: names of the example's own, so that it can share a NATS server.
const DefaultStream = "NOTIFICATION_EXAMPLE"

const (
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

// Orders is the order service's database: its orders table and its outbox.
type Orders struct {
	Service *OrderService
	Store   OutboxStore // the outbox, which the order relay relays
	db      *sql.DB     // nil when it is the SQLite Store's
}

// OpenOrders opens (and migrates) the order service's database.
func OpenOrders(ctx context.Context, st Storage, logger *slog.Logger) (_ *Orders, err error) {
	o := &Orders{}
	defer func() {
		if err != nil {
			_ = o.Close()
		}
	}()
	if o.Store, err = st.OpenOutbox(ctx, "orders", outbox.DefaultTable, nil, logger); err != nil {
		return nil, err
	}
	if _, err := o.Store.MigrateUp(ctx); err != nil {
		return nil, fmt.Errorf("migrating the order outbox: %w", err)
	}
	var db *sql.DB
	if s, ok := o.Store.(*sqlite.Store); ok {
		db = s.DB() // its commits wake the relay at once
	} else {
		if o.db, err = st.OpenDB(ctx, "orders"); err != nil {
			return nil, err
		}
		db = o.db
	}
	o.Service, err = NewOrderService(ctx, db, o.Store.Writer(), st.Table("orders"))
	return o, err
}

// Close closes the database.
func (o *Orders) Close() error {
	var err error
	if o.Store != nil {
		err = o.Store.Close()
	}
	if o.db != nil {
		err = errors.Join(err, o.db.Close())
	}
	return err
}

// RunOrderRelay relays the order service's outbox to JetStream until ctx ends.
func RunOrderRelay(ctx context.Context, st OutboxStore, natsURL, stream string, logger *slog.Logger) error {
	snk, err := natssink.New(ctx, natssink.Config{
		URL: natsURL, Source: "order-service", SubjectPrefix: stream + ".", Logger: logger,
		Stream: &jetstream.StreamConfig{Name: stream, Subjects: []string{stream + ".>"}, Storage: jetstream.FileStorage},
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
	DB     *sql.DB
	Inbox  *inbox.Inbox
	Outbox OutboxStore // notify_outbox: for its stats (the publishers open their own)
	table  string      // notify_outbox, qualified
}

// OpenNotify opens (and migrates) the notification service's database.
func OpenNotify(ctx context.Context, st Storage, logger *slog.Logger) (_ *NotifyDB, err error) {
	n := &NotifyDB{table: st.Table(NotifyTable)}
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()
	if n.DB, err = st.OpenDB(ctx, "notify"); err != nil {
		return nil, err
	}
	if n.Outbox, err = st.OpenOutbox(ctx, "notify", NotifyTable, n.DB, logger); err != nil {
		return nil, err
	}
	if _, err := n.Outbox.MigrateUp(ctx); err != nil {
		return nil, fmt.Errorf("migrating %s: %w", NotifyTable, err)
	}
	if n.Inbox, err = inbox.New(ctx, inbox.Config{Dialect: st.Dialect(), DB: n.DB, Table: st.Table(notifyInbox), Consumer: notifyDurable, Logger: logger}); err != nil {
		return nil, err
	}
	if _, err := n.Inbox.MigrateUp(ctx); err != nil {
		return nil, fmt.Errorf("migrating the inbox: %w", err)
	}
	if err := tablesOf(st).create(ctx, n.DB); err != nil {
		return nil, err
	}
	return n, nil
}

// Close closes the database.
func (n *NotifyDB) Close() error {
	var err error
	if n.Outbox != nil {
		err = n.Outbox.Close()
	}
	if n.DB != nil {
		err = errors.Join(err, n.DB.Close())
	}
	return err
}

// RunNotifier consumes order.status events from JetStream through the inbox until ctx ends.
func RunNotifier(ctx context.Context, n *NotifyDB, notifier *Notifier, natsURL, stream string, logger *slog.Logger) error {
	a, err := natsinbox.New(natsinbox.Config{
		Inbox: n.Inbox, URL: natsURL, Name: notifyDurable, Stream: stream, Durable: notifyDurable,
		SubjectPrefix: stream + ".", FilterSubjects: []string{stream + "." + StatusTopic},
		AckWait: 5 * time.Second, Batch: 20, Logger: logger,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx, notifier.Handle)
}

// PublisherConfig configures one channel publisher.
type PublisherConfig struct {
	// Storage is where the notification service keeps notify_outbox.
	Storage Storage
	// Channel is the channel: the publisher relays topic notify.<Channel> only.
	Channel string
	// Sink delivers the channel's messages; the publisher closes it.
	Sink   sink.Sink
	Logger *slog.Logger
	// RelayID names the publisher among its channel's publishers. Default
	// "publisher-<channel>": a restarted publisher takes its own place back at once instead
	// of sharing the keys with its dead predecessor until that one's membership expires.
	// Give each further publisher of a channel an id of its own.
	RelayID string
	// Hooks are passed to the relay.
	Hooks []relay.Hook
}

// RunPublisher runs a channel publisher until ctx ends: a relay on notify_outbox restricted
// to its channel's topic, with the channel's sink. Each channel's publisher runs (and can be
// restarted, or scaled) on its own; a new channel is a new publisher.
//
// On SQLite, where a Store keeps its claims in its process, run one publisher per channel:
// publishers of different channels in different processes never claim the same message nor
// wait for each other's keys, because their topics differ and every key (order/channel)
// belongs to one topic. On PostgreSQL, publishers of one channel scale out and split its keys.
func RunPublisher(ctx context.Context, cfg PublisherConfig) error {
	defer cfg.Sink.Close()
	st, err := cfg.Storage.OpenOutbox(ctx, "notify", NotifyTable, nil, cfg.Logger)
	if err != nil {
		return err
	}
	defer st.Close()
	src, err := poll.New(poll.Config{
		Store: st, Topics: []string{Topic(cfg.Channel)}, Logger: cfg.Logger,
		RelayID:           cmp.Or(cfg.RelayID, "publisher-"+cfg.Channel),
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
