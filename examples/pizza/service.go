package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/natsinbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/sink"
	natssink "github.com/outboxgo/outbox/sink/nats"
)

// The saga's events: each is an outbox topic, published on the subject "pizza.<topic>" of
// the stream PIZZA. Every event's key is the order id: the saga's correlation id.
const (
	OrderCreated   = "ORDER_CREATED"   // order → payment
	OrderPaid      = "ORDER_PAID"      // payment → kitchen, order
	OrderAccepted  = "ORDER_ACCEPTED"  // kitchen → delivery, order
	OrderRejected  = "ORDER_REJECTED"  // kitchen → payment (refund), order
	OrderRefunded  = "ORDER_REFUNDED"  // payment → order (cancel)
	OrderDelivered = "ORDER_DELIVERED" // delivery → order
	OrderCancelled = "ORDER_CANCELLED" // order → (anyone interested)

	streamName    = "PIZZA"
	subjectPrefix = "pizza."
)

// event is the payload of every saga event: the order travels with it, so that no service
// reads another's database.
type event struct {
	OrderID     string `json:"order_id"`
	Customer    string `json:"customer"`
	Pizza       string `json:"pizza"`
	AmountCents int64  `json:"amount_cents"`
	Reason      string `json:"reason,omitempty"`
	Courier     string `json:"courier,omitempty"`
}

// serviceOptions configure one service process.
type serviceOptions struct {
	db      dbOptions
	natsURL string
	ackWait time.Duration
	logger  *slog.Logger
	out     *printer
}

// handler applies one event to a service's database, inside the inbox's transaction tx, and
// may enqueue the next events with emit.
type handler func(ctx context.Context, s *service, tx *sql.Tx, topic string, ev event) error

// service is what the four services share: a database with an outbox (drained by a relay
// to NATS) and an inbox (fed from NATS by one natsinbox adapter per consumed topic).
type service struct {
	name     string
	opts     serviceOptions
	db       *database
	in       *inbox.Inbox
	consumes map[string]handler

	// hooks
	applied, duplicates atomic.Int64
	afterCommit         func(d *inbox.Delivery, o *inbox.Outcome) // set by the payment's --crash-after-commit
	sinkWrap            func(sink.Sink) sink.Sink
}

// duplicateMark starts the line a service prints for each duplicate its inbox dropped.
const duplicateMark = "inbox: duplicate "

// notesKey carries a delivery's progress lines: printed only once its transaction committed.
type notesKey struct{}

type notes struct{ lines []string }

// say records a progress line of the event being handled.
func (s *service) say(ctx context.Context, orderID, format string, args ...any) {
	if n, ok := ctx.Value(notesKey{}).(*notes); ok {
		n.lines = append(n.lines, fmt.Sprintf("%-8s %s  ", s.name, orderID)+fmt.Sprintf(format, args...))
	}
}

// BeforeDeliver implements inbox.HookDeliver: the delivery's lines are printed after its
// commit, duplicates are counted and shown.
func (s *service) BeforeDeliver(ctx context.Context, _ string, d *inbox.Delivery) (context.Context, func(*inbox.Outcome, error)) {
	n := &notes{}
	return context.WithValue(ctx, notesKey{}, n), func(o *inbox.Outcome, err error) {
		if s.afterCommit != nil {
			defer s.afterCommit(d, o) // o is zero when err is set
		}
		if err != nil {
			return
		}
		switch o.Result {
		case inbox.Applied:
			s.applied.Add(1)
			for _, l := range n.lines {
				s.opts.out.line(l)
			}
		case inbox.Duplicate:
			s.duplicates.Add(1)
			s.opts.out.line(fmt.Sprintf("%-8s %s  "+duplicateMark+"%s dropped (applied before; not applied again)", s.name, d.Message.Key, d.Message.Topic))
			s.opts.logger.Info("inbox: duplicate dropped", "service", s.name, "topic", d.Message.Topic, "key", d.Message.Key, "id", d.Message.ID)
		}
	}
}

// emit enqueues an event in tx: it is published after tx commits, and only if it does.
func (s *service) emit(ctx context.Context, tx *sql.Tx, topic string, ev event) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	return s.db.writer.Enqueue(ctx, tx, outbox.Message{
		Topic:   topic,
		Key:     ev.OrderID, // the correlation id: one order's events stay in order
		Payload: body,
		Headers: map[string]string{"content-type": "application/json"},
	})
}

// exec runs a statement written with ? placeholders and {t:table} names.
func (s *service) exec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	return tx.ExecContext(ctx, s.db.q(query), args...)
}

// open opens the service's database, creates its tables and its inbox.
func (s *service) open(ctx context.Context, ddl []string) error {
	db, err := openDatabase(ctx, s.opts.db, s.opts.logger)
	if err != nil {
		return err
	}
	s.db = db
	for _, stmt := range ddl {
		if _, err := db.db.ExecContext(ctx, db.q(replaceID(stmt, db))); err != nil {
			db.close()
			return fmt.Errorf("%s: creating tables: %w", s.name, err)
		}
	}
	s.in, err = inbox.New(ctx, inbox.Config{
		Dialect:  db.dialect,
		DB:       db.db,
		Table:    db.table("inbox"),
		Consumer: "pizza-" + s.name,
		Logger:   s.opts.logger,
		Hooks:    []inbox.Hook{s},
	})
	if err == nil {
		_, err = s.in.MigrateUp(ctx)
	}
	if err != nil {
		db.close()
		return fmt.Errorf("%s: inbox: %w", s.name, err)
	}
	return nil
}

// replaceID puts the dialect's auto-incremented key where stmt says {id}.
func replaceID(stmt string, db *database) string {
	return strings.ReplaceAll(stmt, "{id}", db.idColumn())
}

// run relays the service's outbox to NATS and consumes its topics until ctx ends. The
// service's own work (the order service placing orders) runs beside it in work, if not nil.
func (s *service) run(ctx context.Context, work func(ctx context.Context) error) error {
	defer s.db.close()
	if err := ensureStream(ctx, s.opts.natsURL, s.opts.logger); err != nil {
		return err
	}
	var snk sink.Sink
	snk, err := natssink.New(ctx, natssink.Config{URL: s.opts.natsURL, Name: "pizza-" + s.name + "-relay", Source: "pizza-" + s.name,
		SubjectPrefix: subjectPrefix, Logger: s.opts.logger})
	if err != nil {
		return err
	}
	defer snk.Close()
	if s.sinkWrap != nil {
		snk = s.sinkWrap(snk)
	}
	src, err := poll.New(poll.Config{Store: s.db.store, Logger: s.opts.logger,
		// One relay per service database: a restarted relay takes its place at once.
		RelayID: "pizza-" + s.name, HeartbeatInterval: time.Second, MemberTTL: 3 * time.Second})
	if err != nil {
		return err
	}
	r, err := relay.New(relay.Config{Source: src, Sink: snk, Logger: s.opts.logger})
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	fail := func(err error) {
		if err != nil && ctx.Err() == nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
			cancel()
		}
	}
	wg.Go(func() { fail(r.Run(ctx)) })
	for topic, h := range s.consumes {
		a, err := natsinbox.New(natsinbox.Config{
			Inbox:          s.in,
			URL:            s.opts.natsURL,
			Name:           "pizza-" + s.name + "-inbox",
			Stream:         streamName,
			Durable:        "pizza-" + s.name + "-" + topic, // one durable per topic: NATS 2.9 takes one filter
			SubjectPrefix:  subjectPrefix,
			FilterSubjects: []string{subjectPrefix + topic},
			AckWait:        s.opts.ackWait,
			Logger:         s.opts.logger,
		})
		if err != nil {
			cancel()
			wg.Wait()
			return err
		}
		wg.Go(func() {
			fail(a.Run(ctx, func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
				var ev event
				if err := json.Unmarshal(m.Payload, &ev); err != nil {
					return fmt.Errorf("decoding %s %s: %w", m.Topic, m.ID, err)
				}
				stx, ok := tx.(*sql.Tx)
				if !ok {
					return fmt.Errorf("unexpected transaction type %T", tx)
				}
				return h(ctx, s, stx, m.Topic, ev)
			}))
		})
	}
	if work != nil {
		wg.Go(func() { fail(work(ctx)) })
	}
	<-ctx.Done()
	wg.Wait()
	return errors.Join(errs...)
}

// ensureStream creates the PIZZA stream (or leaves it as it is), retrying while NATS is
// unreachable, so that the consumers find it.
func ensureStream(ctx context.Context, url string, logger *slog.Logger) error {
	for wait := 200 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := func() error {
			nc, err := natsgo.Connect(url, natsgo.Name("pizza-setup"), natsgo.Timeout(2*time.Second))
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, err = js.CreateStream(cctx, jetstream.StreamConfig{Name: streamName, Subjects: []string{subjectPrefix + ">"},
				Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute})
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				err = nil
			}
			return err
		}()
		if err == nil {
			return nil
		}
		logger.Warn("creating the stream; retrying", "stream", streamName, "in", wait, "error", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// printer serialises the progress lines of the services.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, s)
}
