package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
)

// Order statuses: awaiting_payment → packing when paid, → payment_failed when declined.
const (
	statusAwaitingPayment = "awaiting_payment"
	statusPacking         = "packing"
	statusPaymentFailed   = "payment_failed"
)

// Order is an order of the OMS.
type Order struct {
	ID         string `json:"id"`
	Customer   string `json:"customer"`
	TotalCents int64  `json:"total_cents"`
	Status     string `json:"status"`
}

// OMS is the order management service: it takes orders and moves them on when the
// gateway's payment events arrive through its inbox.
type OMS struct {
	d   *database
	in  *inbox.Inbox
	log *slog.Logger
	// onChange, when set, is told of each status change, after the handler ran (the inbox
	// commits it right after): the demo prints it.
	onChange func(orderID, from, to string)
}

var omsSchema = []string{
	`CREATE TABLE IF NOT EXISTS orders (
  id          TEXT PRIMARY KEY,
  customer    TEXT NOT NULL,
  total_cents BIGINT NOT NULL,
  status      TEXT NOT NULL)`,
	// One row per status change: the scenario test checks that no order entered packing
	// twice.
	`CREATE TABLE IF NOT EXISTS order_history (
  order_id   TEXT NOT NULL,
  status     TEXT NOT NULL,
  payment_id TEXT NOT NULL,
  at_micros  BIGINT NOT NULL)`,
}

// NewOMS creates the OMS's tables and inbox in d.
func NewOMS(ctx context.Context, d *database, logger *slog.Logger) (*OMS, error) {
	if err := d.exec(ctx, omsSchema...); err != nil {
		return nil, err
	}
	in, err := d.openInbox(ctx, "oms", logger)
	if err != nil {
		return nil, err
	}
	return &OMS{d: d, in: in, log: logger}, nil
}

// Place stores a new order awaiting its payment.
func (o *OMS) Place(ctx context.Context, customer string, totalCents int64) (Order, error) {
	ord := Order{ID: "order-" + outbox.NewID().String()[24:], Customer: customer, TotalCents: totalCents, Status: statusAwaitingPayment}
	_, err := o.d.db.ExecContext(ctx, `INSERT INTO orders (id, customer, total_cents, status) VALUES ($1, $2, $3, $4)`,
		ord.ID, ord.Customer, ord.TotalCents, ord.Status)
	if err != nil {
		return Order{}, fmt.Errorf("placing the order: %w", err)
	}
	return ord, nil
}

// Order reads an order.
func (o *OMS) Order(ctx context.Context, id string) (Order, error) {
	ord := Order{ID: id}
	err := o.d.db.QueryRowContext(ctx, `SELECT customer, total_cents, status FROM orders WHERE id = $1`, id).
		Scan(&ord.Customer, &ord.TotalCents, &ord.Status)
	return ord, err
}

// errUnknownOrder is returned by the handler for a payment of an order the OMS does not
// have (yet): the inbox retries it, then dead-letters it.
var errUnknownOrder = errors.New("payment for an unknown order")

// handle applies one payment event in the inbox's transaction tx: the order moves on only
// from awaiting_payment, so a payment event applies at most once per order whatever the
// broker redelivers (the inbox drops the same event's duplicates before this runs).
func (o *OMS) handle(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
	stx, ok := tx.(*sql.Tx)
	if !ok {
		return fmt.Errorf("unexpected transaction type %T", tx)
	}
	var p Payment
	if err := json.Unmarshal(m.Payload, &p); err != nil {
		return fmt.Errorf("decoding %s: %w", m.ID, err)
	}
	to := statusPacking
	switch {
	case m.Topic == topicPaymentDeclined:
		to = statusPaymentFailed
	case m.Topic != topicPaymentCaptured:
		return nil // not a payment event
	}
	var ord Order
	err := stx.QueryRowContext(ctx, `SELECT total_cents, status FROM orders WHERE id = $1`, p.OrderID).Scan(&ord.TotalCents, &ord.Status)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: %s", errUnknownOrder, p.OrderID)
	case err != nil:
		return err
	case ord.Status != statusAwaitingPayment:
		o.log.InfoContext(ctx, "order not awaiting payment; event ignored", "order", p.OrderID, "status", ord.Status, "event", m.Topic)
		return nil
	case to == statusPacking && p.AmountCents != ord.TotalCents:
		o.log.WarnContext(ctx, "payment does not match the order total; not packing", "order", p.OrderID, "paid", p.AmountCents, "total", ord.TotalCents)
		to = statusPaymentFailed
	}
	if _, err := stx.ExecContext(ctx, `UPDATE orders SET status = $1 WHERE id = $2 AND status = $3`, to, p.OrderID, statusAwaitingPayment); err != nil {
		return err
	}
	if _, err := stx.ExecContext(ctx, `INSERT INTO order_history (order_id, status, payment_id, at_micros) VALUES ($1, $2, $3, $4)`,
		p.OrderID, to, p.ID, time.Now().UnixMicro()); err != nil {
		return err
	}
	if o.onChange != nil {
		o.onChange(p.OrderID, statusAwaitingPayment, to)
	}
	return nil
}

// Consume applies the gateway's payment events until ctx ends.
func (o *OMS) Consume(ctx context.Context, natsURL string) error {
	return consume(ctx, o.in, natsURL, "payment.>", o.handle, o.log)
}

// Handler serves POST /orders {"customer", "total_cents"} and GET /orders/{id}.
func (o *OMS) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Customer   string `json:"customer"`
			TotalCents int64  `json:"total_cents"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Customer == "" || req.TotalCents <= 0 {
			http.Error(w, "want {customer, total_cents > 0}", http.StatusBadRequest)
			return
		}
		ord, err := o.Place(r.Context(), req.Customer, req.TotalCents)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, http.StatusCreated, ord)
	})
	mux.HandleFunc("GET /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
		ord, err := o.Order(r.Context(), r.PathValue("id"))
		writeFound(w, r, ord, err)
	})
	return mux
}

// runOMS is the oms subcommand: the HTTP API and the consumer of payment events.
func runOMS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("oms", flag.ContinueOnError)
	var f serviceFlags
	f.register(fs, "127.0.0.1:8082", "oms.db")
	d, logger, err := f.open(ctx, fs, args, "oms", false, stderr)
	if err != nil {
		return err
	}
	defer d.close()
	o, err := NewOMS(ctx, d, logger)
	if err != nil {
		return err
	}
	return runService(ctx, stdout, "oms", f.addr, o.Handler(), func(ctx context.Context) error { return o.Consume(ctx, f.natsURL) })
}
