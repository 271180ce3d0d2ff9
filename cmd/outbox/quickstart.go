package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/sqlite"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	natssink "github.com/outboxgo/outbox/sink/nats"
)

type quickstartOptions struct {
	duration time.Duration
	grace    time.Duration
	dir      string
	rate     int
	port     int
	verbose  bool
	quiet    bool
}

const quickstartLong = `quickstart runs a complete transactional outbox in this one process, with nothing installed:

  database  an SQLite file with an orders table and the outbox tables
  broker    an embedded NATS JetStream server with a stream ORDERS on orders.>
  producer  inserts an order row AND enqueues its orders.created event in ONE transaction
  relay     wakes at each commit and publishes each committed event to JetStream
  consumer  reads orders.> and prints each event with its end-to-end latency

At the end it checks that every committed order's event arrived (lost must be 0) and exits
non-zero otherwise. It uses built-in settings: the configuration file, OUTBOX_* variables
and the database and table flags do not apply to it.`

func (a *app) quickstartCmd() *cobra.Command {
	var o quickstartOptions
	cmd := &cobra.Command{
		Use:   "quickstart",
		Short: "Run producer, relay, broker and consumer in one process: no services needed",
		Long:  quickstartLong,
		Example: `  outbox quickstart                      # until Ctrl-C
  outbox quickstart --duration 10s       # for scripts: exits 1 if an event was lost
  outbox quickstart --dir ./qs --rate 50 # keep the files, 50 orders per second`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case o.duration < 0:
				return usagef("--duration must not be negative")
			case o.grace <= 0:
				return usagef("--grace must be positive")
			case o.rate < 1 || o.rate > 10000:
				return usagef("--rate must be between 1 and 10000 orders per second")
			case o.port < 0 || o.port > 65535:
				return usagef("--port must be between 0 and 65535")
			}
			return a.runQuickstart(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.duration, "duration", 0, "stop producing after this long (0: run until Ctrl-C)")
	f.DurationVar(&o.grace, "grace", 10*time.Second, "how long to wait, after the producer stops, for the last events")
	f.StringVar(&o.dir, "dir", "", "keep the database and JetStream files here (default: a temporary directory, removed at exit)")
	f.IntVar(&o.rate, "rate", 5, "orders per second")
	f.IntVar(&o.port, "port", 0, "NATS port on 127.0.0.1 (0: a free port)")
	f.BoolVar(&o.verbose, "verbose", false, "show relay and NATS server logs")
	f.BoolVar(&o.quiet, "quiet", false, "print only the header and the summary, not each order and event")
	return cmd
}

// lockedWriter serialises the producer's and the consumer's lines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format, args...)
}

const (
	qsStream  = "ORDERS"
	qsSubject = "orders.>"
	qsTopic   = "orders.created"
)

func (a *app) runQuickstart(ctx context.Context, o quickstartOptions) (err error) {
	out := &lockedWriter{w: a.stdout}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: safeAttr}))

	dir := o.dir
	if dir == "" {
		dir, err = os.MkdirTemp("", "outbox-quickstart-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// Everything but the producer runs on a context that survives Ctrl-C, so that what was
	// committed is still delivered before the summary.
	base := context.WithoutCancel(ctx)

	// The server stores JetStream data in dir/jetstream.
	ns, err := startNATS(dir, o.port, o.verbose, logger)
	if err != nil {
		return err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()

	dbPath := filepath.Join(dir, "quickstart.db")
	st, err := sqlite.New(base, sqlite.Config{Path: dbPath, Logger: logger})
	if err != nil {
		return err
	}
	defer st.Close()
	if _, err := st.MigrateUp(base); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	if _, err := st.DB().ExecContext(base, `CREATE TABLE IF NOT EXISTS orders (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  customer TEXT NOT NULL,
  amount_cents INTEGER NOT NULL,
  status TEXT NOT NULL,
  created_at TEXT NOT NULL)`); err != nil {
		return fmt.Errorf("creating the orders table: %w", err)
	}

	// The consumer: its own connection, like a separate service.
	nc, err := natsgo.Connect(ns.ClientURL(), natsgo.Name("quickstart-consumer"))
	if err != nil {
		return fmt.Errorf("connecting the consumer: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.CreateOrUpdateStream(base, jetstream.StreamConfig{
		Name: qsStream, Subjects: []string{qsSubject}, Storage: jetstream.FileStorage,
	}); err != nil {
		return fmt.Errorf("creating stream %s: %w", qsStream, err)
	}
	cons, err := js.OrderedConsumer(base, qsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{qsSubject},
		// Only this run's events; with --dir, earlier runs' events are still in the stream.
		DeliverPolicy: jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return fmt.Errorf("creating the consumer: %w", err)
	}
	t := newTally()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev := t.receive(m.Headers(), time.Now())
		if !o.quiet {
			out.printf("  < event   %-15s key=%-11s id=%s  latency=%s%s\n",
				m.Subject(), ev.key, ev.id, ev.latency.Round(100*time.Microsecond), ev.note)
		}
	})
	if err != nil {
		return fmt.Errorf("consuming: %w", err)
	}
	defer cc.Stop()

	// The relay: the same engine as 'outbox relay', over the SQLite store, to the NATS sink.
	snk, err := natssink.New(base, natssink.Config{URL: ns.ClientURL(), Source: "outbox-quickstart", Logger: logger})
	if err != nil {
		return err
	}
	defer snk.Close()
	src, err := poll.New(poll.Config{Store: st, Logger: logger})
	if err != nil {
		return err
	}
	r, err := relay.New(relay.Config{Source: src, Sink: snk, Logger: logger})
	if err != nil {
		return err
	}
	relayCtx, stopRelay := context.WithCancel(base)
	defer stopRelay()
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(relayCtx) }()

	runFor := "until Ctrl-C"
	if o.duration > 0 {
		runFor = "for " + o.duration.String() + " (Ctrl-C stops earlier)"
	}
	out.printf(`outbox quickstart: a transactional outbox, end to end, in one process

  database  SQLite %s (tables orders, outbox)
  broker    NATS JetStream %s, stream %s on %s
  producer  %d order(s)/s; each order row and its %s event commit in ONE transaction
  relay     wakes at commit (fallback poll every %s), publishes to JetStream, deletes a row after its PubAck
  consumer  ordered consumer on %s, prints each event and its latency (now - ce-time)

Running %s.
`, dbPath, ns.ClientURL(), qsStream, qsSubject, o.rate, qsTopic, poll.DefaultPollInterval, qsSubject, runFor)

	if !o.quiet {
		out.printf("\n")
	}
	prodCtx := ctx
	if o.duration > 0 {
		var cancel context.CancelFunc
		prodCtx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	prodErr := produce(prodCtx, base, st.DB(), st.Writer(), o.rate, t, out, o.quiet)

	// Wait for the last events, then stop the relay and the consumer.
	if !t.allReceived() {
		out.printf("\nProducer stopped; waiting up to %s for the relay to deliver the last events...\n", o.grace)
	}
	deadline := time.Now().Add(o.grace)
	for !t.allReceived() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	stopRelay()
	if err := <-relayDone; err != nil {
		logger.Warn("relay stopped with an error", slog.Any("error", err))
	}
	cc.Stop()
	<-cc.Closed()

	s := t.summary()
	out.printf(`
Summary
  orders committed  %d (each with its event, in the same transaction)
  events received   %d unique, %d duplicate(s)
`, s.committed, s.received, s.duplicates)
	if s.foreign > 0 {
		out.printf("  other events      %d (committed by an earlier run in this --dir)\n", s.foreign)
	}
	if s.received > 0 {
		out.printf("  latency           p50 %s, p99 %s (enqueue to consumer)\n",
			s.p50.Round(100*time.Microsecond), s.p99.Round(100*time.Microsecond))
	}
	if s.lost == 0 {
		out.printf("  lost              0: every committed order's event was delivered\n")
	} else {
		out.printf("  lost              %d: committed but not received within %s\n", s.lost, o.grace)
	}
	if prodErr != nil {
		return prodErr
	}
	if s.lost > 0 {
		return &exitError{code: exitFailure, msg: fmt.Sprintf("%d committed event(s) were not received", s.lost)}
	}
	return nil
}

// startNATS starts an embedded JetStream server on 127.0.0.1.
func startNATS(storeDir string, port int, verbose bool, logger *slog.Logger) (*server.Server, error) {
	if port == 0 {
		port = server.RANDOM_PORT
	} else {
		// The server only logs a busy port (and we silence it): check first.
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))) //nolint:noctx // a port probe: Listen does not block
		if err != nil {
			return nil, fmt.Errorf("starting NATS: %w", err)
		}
		_ = l.Close()
	}
	ns, err := server.NewServer(&server.Options{
		ServerName: "outbox-quickstart",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoLog:      !verbose,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("starting NATS: %w", err)
	}
	if verbose {
		ns.SetLogger(natsLogger{logger.With(slog.String("component", "nats-server"))}, false, false)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("starting NATS: not ready within 10s (is port %d free?)", port)
	}
	return ns, nil
}

// natsLogger sends the embedded server's logs to slog.
type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(format string, v ...any) { n.l.Info(fmt.Sprintf(format, v...)) }
func (n natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Errorf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Debugf(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Tracef(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }

// orderEvent is the payload of orders.created.
type orderEvent struct {
	OrderID     string    `json:"order_id"`
	Customer    string    `json:"customer"`
	AmountCents int64     `json:"amount_cents"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
}

var customers = []string{"ada", "grace", "linus", "barbara", "ken", "margaret", "dennis", "frances"}

// produce creates rate orders per second until ctx ends. Each order is one transaction on
// txCtx (not cancelled by ctx, so a commit is never cut off halfway): the order row and its
// event are committed together or not at all.
func produce(ctx, txCtx context.Context, db *sql.DB, w *outbox.Writer, rate int, t *tally, out *lockedWriter, quiet bool) error {
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		id, key, cust, amount, err := placeOrder(txCtx, db, w)
		if err != nil {
			return fmt.Errorf("placing an order: %w", err)
		}
		t.commit(id, key)
		if !quiet {
			out.printf("  > commit  %-11s %-9s %7.2f  order row + outbox row, one transaction\n",
				key, cust, float64(amount)/100)
		}
	}
}

func placeOrder(ctx context.Context, db *sql.DB, w *outbox.Writer) (id uuid.UUID, key, customer string, amount int64, err error) {
	customer = customers[rand.IntN(len(customers))]
	amount = 500 + rand.Int64N(20000)
	now := time.Now().UTC()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return id, "", "", 0, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var orderID int64
	if err = tx.QueryRowContext(ctx,
		`INSERT INTO orders (customer, amount_cents, status, created_at) VALUES (?, ?, 'created', ?) RETURNING id`,
		customer, amount, now.Format(time.RFC3339Nano)).Scan(&orderID); err != nil {
		return id, "", "", 0, err
	}
	key = fmt.Sprintf("order-%d", orderID)
	payload, err := json.Marshal(orderEvent{OrderID: key, Customer: customer, AmountCents: amount, Status: "created", CreatedAt: now})
	if err != nil {
		return id, "", "", 0, err
	}
	msg := outbox.Message{
		ID:      outbox.NewID(),
		Topic:   qsTopic,
		Key:     key,
		Payload: payload,
		Headers: map[string]string{"content-type": "application/json"},
	}
	if err = w.Enqueue(ctx, tx, msg); err != nil {
		return id, "", "", 0, err
	}
	if err = tx.Commit(); err != nil {
		return id, "", "", 0, err
	}
	return msg.ID, key, customer, amount, nil
}

// tally matches committed events with received ones.
type tally struct {
	mu         sync.Mutex
	committed  map[uuid.UUID]string        // message id → key
	received   map[uuid.UUID]time.Duration // message id → latency of its first delivery
	duplicates int
	invalid    int
}

func newTally() *tally {
	return &tally{committed: map[uuid.UUID]string{}, received: map[uuid.UUID]time.Duration{}}
}

func (t *tally) commit(id uuid.UUID, key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.committed[id] = key
}

type receivedEvent struct {
	id      string
	key     string
	latency time.Duration
	note    string
}

// receive records a delivery. Whether it belongs to this run is decided at the end: the
// consumer may see an event before the producer has noted its commit.
func (t *tally) receive(h natsgo.Header, now time.Time) receivedEvent {
	// ce- values are percent-encoded (NATS binding 3.1.3.2).
	key := h.Get("ce-subject")
	if k, err := url.PathUnescape(key); err == nil {
		key = k
	}
	ev := receivedEvent{id: h.Get("ce-id"), key: key}
	if ts, err := time.Parse(time.RFC3339Nano, h.Get("ce-time")); err == nil {
		ev.latency = now.Sub(ts)
	}
	id, err := uuid.Parse(ev.id)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.invalid++
		ev.note = "  (no valid ce-id)"
		return ev
	}
	if _, dup := t.received[id]; dup {
		t.duplicates++
		ev.note = "  (duplicate)"
		return ev
	}
	t.received[id] = ev.latency
	return ev
}

func (t *tally) allReceived() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id := range t.committed {
		if _, ok := t.received[id]; !ok {
			return false
		}
	}
	return true
}

type quickstartSummary struct {
	committed, received, duplicates, foreign, lost int
	p50, p99                                       time.Duration
}

func (t *tally) summary() quickstartSummary {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := quickstartSummary{committed: len(t.committed), duplicates: t.duplicates, foreign: t.invalid}
	var lat []time.Duration
	for id, l := range t.received {
		if _, ok := t.committed[id]; ok {
			s.received++
			lat = append(lat, l)
		} else {
			// Committed by an earlier run in the same --dir, published only now.
			s.foreign++
		}
	}
	s.lost = s.committed - s.received
	if len(lat) > 0 {
		slices.Sort(lat)
		s.p50 = percentile(lat, 0.50)
		s.p99 = percentile(lat, 0.99)
	}
	return s
}

// percentile of sorted samples, nearest rank.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
