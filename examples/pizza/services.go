package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/sink"
)

// menu is what the pizzeria sells; order n (from 1) is for menu[(n-1) % len(menu)].
var menu = []struct {
	pizza string
	cents int64
}{
	{"margherita", 850}, {"marinara", 750}, {"diavola", 1050}, {"quattro-formaggi", 1150}, {"hawaiian", 990},
}

var customers = []string{"ada", "grace", "linus", "barbara", "ken", "margaret", "dennis"}

// DefaultOutOfStock is the kitchen's missing ingredient: it rejects every order of this pizza,
// so one order in five is compensated (refunded and cancelled).
const DefaultOutOfStock = "hawaiian"

// orderID names order n: placing it again (after a crash) finds it.
func orderID(n int) string { return fmt.Sprintf("order-%04d", n) }

// pizzaOf is the pizza of order n.
func pizzaOf(n int) (string, int64) {
	m := menu[(n-1)%len(menu)]
	return m.pizza, m.cents
}

func now() int64 { return time.Now().UnixMicro() }

// ---------------------------------------------------------------------------------------
// Order service: places orders (ORDER_CREATED) and follows each to its end.

// orderSteps maps the events the order service consumes to the order's status. The step
// only grows: an event that arrives after a later one (a redelivery after a crash) changes
// nothing.
var orderSteps = map[string]struct {
	status string
	step   int
}{
	OrderPaid:      {"paid", 1},
	OrderAccepted:  {"accepted", 2},
	OrderRejected:  {"rejected", 2},
	OrderDelivered: {"delivered", 3},
	OrderRefunded:  {"cancelled", 3},
}

func newOrderService(o serviceOptions) *service {
	s := &service{name: "order", opts: o, consumes: map[string]handler{}}
	for topic := range orderSteps {
		s.consumes[topic] = orderHandler
	}
	return s
}

var orderDDL = []string{
	`CREATE TABLE IF NOT EXISTS {t:orders} (
  id TEXT PRIMARY KEY,
  customer TEXT NOT NULL,
  pizza TEXT NOT NULL,
  amount_cents BIGINT NOT NULL,
  status TEXT NOT NULL,
  step INTEGER NOT NULL,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL)`,
}

func orderHandler(ctx context.Context, s *service, tx *sql.Tx, topic string, ev event) error {
	st := orderSteps[topic]
	res, err := s.exec(ctx, tx, `UPDATE {t:orders} SET status = ?, step = ?, updated_at = ? WHERE id = ? AND step < ?`,
		st.status, st.step, now(), ev.OrderID, st.step)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		var status string
		if err := tx.QueryRowContext(ctx, s.db.q(`SELECT status FROM {t:orders} WHERE id = ?`), ev.OrderID).Scan(&status); err != nil {
			return fmt.Errorf("%s for order %s: %w", topic, ev.OrderID, err) // unknown order: retried, then dead-lettered
		}
		s.say(ctx, ev.OrderID, "%s arrived late: order already %s, unchanged", topic, status)
		return nil
	}
	switch topic {
	case OrderDelivered:
		s.say(ctx, ev.OrderID, "DELIVERED by %s", ev.Courier)
	case OrderRejected:
		s.say(ctx, ev.OrderID, "rejected by the kitchen (%s); waiting for the refund", ev.Reason)
	case OrderRefunded:
		s.say(ctx, ev.OrderID, "CANCELLED and refunded %s → %s", money(ev.AmountCents), OrderCancelled)
		return s.emit(ctx, tx, OrderCancelled, ev)
	default:
		s.say(ctx, ev.OrderID, "%s", st.status)
	}
	return nil
}

// placeOrders places orders 1..n, rate a second; an order already placed (by an earlier run
// of the service, before a crash) is skipped. Each order row and its ORDER_CREATED commit
// in one transaction.
func placeOrders(s *service, n, rate int) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
		defer tick.Stop()
		for i := 1; i <= n; i++ {
			placed, err := placeOrder(ctx, s, i)
			if err != nil {
				return fmt.Errorf("placing %s: %w", orderID(i), err)
			}
			if !placed {
				continue
			}
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
			}
		}
		return nil
	}
}

func placeOrder(ctx context.Context, s *service, n int) (placed bool, err error) {
	pizza, cents := pizzaOf(n)
	ev := event{OrderID: orderID(n), Customer: customers[(n-1)%len(customers)], Pizza: pizza, AmountCents: cents}
	tx, err := s.db.db.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil || !placed {
			_ = tx.Rollback()
		}
	}()
	res, err := s.exec(ctx, tx, `INSERT INTO {t:orders} (id, customer, pizza, amount_cents, status, step, created_at, updated_at)
VALUES (?, ?, ?, ?, 'created', 0, ?, ?) ON CONFLICT (id) DO NOTHING`, ev.OrderID, ev.Customer, ev.Pizza, ev.AmountCents, now(), now())
	if err != nil {
		return false, err
	}
	if k, err := res.RowsAffected(); err != nil || k == 0 {
		return false, err
	}
	placed = true
	if err = s.emit(ctx, tx, OrderCreated, ev); err != nil {
		return false, err
	}
	if err = tx.Commit(); err != nil {
		return false, err
	}
	s.opts.out.line(fmt.Sprintf("%-8s %s  placed: %s for %s, %s → %s", s.name, ev.OrderID, ev.Pizza, ev.Customer, money(ev.AmountCents), OrderCreated))
	return true, nil
}

// ---------------------------------------------------------------------------------------
// Payment service: charges on ORDER_CREATED, refunds on ORDER_REJECTED.

var paymentDDL = []string{
	`CREATE TABLE IF NOT EXISTS {t:charges} (
  {id},
  order_id TEXT NOT NULL,
  amount_cents BIGINT NOT NULL,
  charged_at BIGINT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS charges_order ON {t:charges} (order_id)`,
	`CREATE TABLE IF NOT EXISTS {t:refunds} (
  {id},
  order_id TEXT NOT NULL,
  amount_cents BIGINT NOT NULL,
  refunded_at BIGINT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS refunds_order ON {t:refunds} (order_id)`,
}

// The charge and refund tables have no unique order_id on purpose: the inbox, not a
// constraint, is what keeps a redelivered event from charging twice, and a double charge
// would show as a second row.

func newPaymentService(o serviceOptions, crashAfterCommit int) *service {
	s := &service{name: "payment", opts: o}
	var (
		armed   atomic.Pointer[string] // the order whose charge kills the process once committed
		charged atomic.Int64           // charges committed by this process
	)
	s.consumes = map[string]handler{
		OrderCreated: func(ctx context.Context, s *service, tx *sql.Tx, _ string, ev event) error {
			if _, err := s.exec(ctx, tx, `INSERT INTO {t:charges} (order_id, amount_cents, charged_at) VALUES (?, ?, ?)`,
				ev.OrderID, ev.AmountCents, now()); err != nil {
				return err
			}
			s.say(ctx, ev.OrderID, "charged %s to %s → %s", money(ev.AmountCents), ev.Customer, OrderPaid)
			if crashAfterCommit > 0 && int(charged.Load())+1 >= crashAfterCommit && armed.Load() == nil {
				id := ev.OrderID
				armed.Store(&id)
			}
			return s.emit(ctx, tx, OrderPaid, ev)
		},
		OrderRejected: func(ctx context.Context, s *service, tx *sql.Tx, _ string, ev event) error {
			var charged int64
			err := tx.QueryRowContext(ctx, s.db.q(`SELECT amount_cents FROM {t:charges} WHERE order_id = ? ORDER BY id LIMIT 1`), ev.OrderID).Scan(&charged)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("refund of %s: no charge", ev.OrderID) // retried: the charge may not be committed yet
			} else if err != nil {
				return err
			}
			if _, err := s.exec(ctx, tx, `INSERT INTO {t:refunds} (order_id, amount_cents, refunded_at) VALUES (?, ?, ?)`,
				ev.OrderID, charged, now()); err != nil {
				return err
			}
			ev.AmountCents = charged
			s.say(ctx, ev.OrderID, "refunded %s to %s (%s) → %s", money(charged), ev.Customer, ev.Reason, OrderRefunded)
			return s.emit(ctx, tx, OrderRefunded, ev)
		},
	}
	if crashAfterCommit > 0 {
		// The article's crash: the charge and its ORDER_PAID are committed, the relay has not
		// published it yet (it is held back while the crash is armed), and the process dies.
		s.sinkWrap = func(snk sink.Sink) sink.Sink {
			return holdSink{Sink: snk, held: func() bool { return armed.Load() != nil }}
		}
		s.afterCommit = func(d *inbox.Delivery, o *inbox.Outcome) {
			if d.Message.Topic == OrderCreated && o.Result == inbox.Applied {
				charged.Add(1)
			}
			id := armed.Load()
			if id == nil || d.Message.Topic != OrderCreated || d.Message.Key != *id {
				return
			}
			if o.Result != inbox.Applied {
				armed.Store(nil)
				return
			}
			s.opts.out.line(fmt.Sprintf("%-8s %s  *** CRASH: charge committed, its %s is in the outbox, not yet published: kill -9 now", s.name, *id, OrderPaid))
			if p, err := os.FindProcess(os.Getpid()); err == nil {
				_ = p.Kill() // SIGKILL: no deferred function, no relay, no ack runs
			}
			os.Exit(137)
		}
	}
	return s
}

// holdSink holds every publish back while held() is true.
type holdSink struct {
	sink.Sink
	held func() bool
}

func (h holdSink) Publish(ctx context.Context, recs []*outbox.Record) []error {
	for h.held() {
		select {
		case <-ctx.Done():
			errs := make([]error, len(recs))
			for i := range errs {
				errs[i] = ctx.Err()
			}
			return errs
		case <-time.After(10 * time.Millisecond):
		}
	}
	return h.Sink.Publish(ctx, recs)
}

// ---------------------------------------------------------------------------------------
// Kitchen (restaurant) service: accepts or rejects each paid order.

var kitchenDDL = []string{
	`CREATE TABLE IF NOT EXISTS {t:tickets} (
  {id},
  order_id TEXT NOT NULL,
  pizza TEXT NOT NULL,
  decision TEXT NOT NULL,
  decided_at BIGINT NOT NULL)`,
}

func newKitchenService(o serviceOptions, outOfStock []string) *service {
	s := &service{name: "kitchen", opts: o}
	s.consumes = map[string]handler{
		OrderPaid: func(ctx context.Context, s *service, tx *sql.Tx, _ string, ev event) error {
			decision, next := "accepted", OrderAccepted
			if slices.Contains(outOfStock, ev.Pizza) {
				decision, next = "rejected", OrderRejected
				ev.Reason = "out of " + ev.Pizza
			}
			if _, err := s.exec(ctx, tx, `INSERT INTO {t:tickets} (order_id, pizza, decision, decided_at) VALUES (?, ?, ?, ?)`,
				ev.OrderID, ev.Pizza, decision, now()); err != nil {
				return err
			}
			s.say(ctx, ev.OrderID, "%s %s → %s", decision, ev.Pizza, next)
			return s.emit(ctx, tx, next, ev)
		},
	}
	return s
}

// ---------------------------------------------------------------------------------------
// Delivery service: delivers every accepted order.

var deliveryDDL = []string{
	`CREATE TABLE IF NOT EXISTS {t:deliveries} (
  {id},
  order_id TEXT NOT NULL,
  courier TEXT NOT NULL,
  delivered_at BIGINT NOT NULL)`,
}

var couriers = []string{"Ana", "Bo", "Chidi", "Dara"}

func newDeliveryService(o serviceOptions) *service {
	s := &service{name: "delivery", opts: o}
	s.consumes = map[string]handler{
		OrderAccepted: func(ctx context.Context, s *service, tx *sql.Tx, _ string, ev event) error {
			h := fnv.New32a()
			_, _ = h.Write([]byte(ev.OrderID))
			ev.Courier = couriers[int(h.Sum32())%len(couriers)]
			if _, err := s.exec(ctx, tx, `INSERT INTO {t:deliveries} (order_id, courier, delivered_at) VALUES (?, ?, ?)`,
				ev.OrderID, ev.Courier, now()); err != nil {
				return err
			}
			s.say(ctx, ev.OrderID, "%s delivered the %s → %s", ev.Courier, ev.Pizza, OrderDelivered)
			return s.emit(ctx, tx, OrderDelivered, ev)
		},
	}
	return s
}

func money(cents int64) string { return fmt.Sprintf("€%d.%02d", cents/100, cents%100) }
