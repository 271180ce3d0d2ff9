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
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/outboxgo/outbox"
)

// Payment is a payment the gateway took for an order: one per order.
type Payment struct {
	ID          string    `json:"payment_id"`
	OrderID     string    `json:"order_id"`
	AmountCents int64     `json:"amount_cents"`
	Status      string    `json:"status"` // "captured" or "declined"
	At          time.Time `json:"at"`
}

// Payment statuses.
const (
	paymentCaptured = "captured"
	paymentDeclined = "declined"
)

// declinedCard is the test card number the gateway declines.
const declinedCard = "4000000000000002"

// Gateway is the payment gateway: it takes payments and, in the same transaction, enqueues
// their event for the relay to publish.
type Gateway struct {
	d   *database
	log *slog.Logger
	// beforeCommit and afterCommit, when set, are called around each payment's commit:
	// fault injection (--crash-after-commit, the demo's crash).
	beforeCommit func(p Payment)
	afterCommit  func(p Payment)
}

const gatewaySchema = `CREATE TABLE IF NOT EXISTS payments (
  order_id     TEXT PRIMARY KEY,
  payment_id   TEXT NOT NULL,
  amount_cents BIGINT NOT NULL,
  status       TEXT NOT NULL,
  at_micros    BIGINT NOT NULL)`

// NewGateway creates the gateway's table in d, which must have an outbox.
func NewGateway(ctx context.Context, d *database, logger *slog.Logger) (*Gateway, error) {
	if err := d.exec(ctx, gatewaySchema); err != nil {
		return nil, err
	}
	return &Gateway{d: d, log: logger}, nil
}

// Pay takes the payment of orderID with card: captured unless the card is declinedCard.
// It is idempotent per order: a second call returns the first payment (replay true) and
// writes nothing. The payment row and its event commit together or not at all.
func (g *Gateway) Pay(ctx context.Context, orderID string, amountCents int64, card string) (p Payment, replay bool, err error) {
	p = Payment{ID: outbox.NewID().String(), OrderID: orderID, AmountCents: amountCents, Status: paymentCaptured, At: time.Now().UTC()}
	if card == declinedCard {
		p.Status = paymentDeclined
	}
	tx, err := g.d.db.BeginTx(ctx, nil)
	if err != nil {
		return Payment{}, false, err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	res, err := tx.ExecContext(ctx, `INSERT INTO payments (order_id, payment_id, amount_cents, status, at_micros)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING`, p.OrderID, p.ID, p.AmountCents, p.Status, p.At.UnixMicro())
	if err != nil {
		return Payment{}, false, fmt.Errorf("storing the payment: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return Payment{}, false, err
	} else if n == 0 {
		_ = tx.Rollback()
		p, err := g.payment(ctx, orderID)
		return p, true, err
	}
	body, err := json.Marshal(p)
	if err != nil {
		return Payment{}, false, err
	}
	topic := topicPaymentCaptured
	if p.Status == paymentDeclined {
		topic = topicPaymentDeclined
	}
	if err = g.d.writer.Enqueue(ctx, tx, outbox.Message{
		Topic: topic, Type: topic, Key: p.OrderID, Payload: body,
		Headers: map[string]string{"content-type": "application/json"},
	}); err != nil {
		return Payment{}, false, fmt.Errorf("enqueueing %s: %w", topic, err)
	}
	if g.beforeCommit != nil {
		g.beforeCommit(p)
	}
	if err = tx.Commit(); err != nil {
		return Payment{}, false, fmt.Errorf("committing the payment: %w", err)
	}
	if g.afterCommit != nil {
		g.afterCommit(p)
	}
	return p, false, nil
}

// payment reads the payment of orderID.
func (g *Gateway) payment(ctx context.Context, orderID string) (Payment, error) {
	p := Payment{OrderID: orderID}
	var at int64
	err := g.d.db.QueryRowContext(ctx, `SELECT payment_id, amount_cents, status, at_micros FROM payments WHERE order_id = $1`, orderID).
		Scan(&p.ID, &p.AmountCents, &p.Status, &at)
	p.At = time.UnixMicro(at).UTC()
	return p, err
}

// Handler serves POST /payments {"order_id", "amount_cents", "card"} and
// GET /payments/{order_id}.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /payments", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			OrderID     string `json:"order_id"`
			AmountCents int64  `json:"amount_cents"`
			Card        string `json:"card"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.OrderID == "" || req.AmountCents <= 0 {
			http.Error(w, "want {order_id, amount_cents > 0, card}", http.StatusBadRequest)
			return
		}
		p, replay, err := g.Pay(r.Context(), req.OrderID, req.AmountCents, strings.ReplaceAll(req.Card, " ", ""))
		if err != nil {
			g.log.ErrorContext(r.Context(), "payment failed", "order", req.OrderID, "error", err)
			http.Error(w, "payment failed", http.StatusInternalServerError)
			return
		}
		status := http.StatusCreated
		if replay {
			status = http.StatusOK
		}
		writeJSON(w, status, p)
	})
	mux.HandleFunc("GET /payments/{order}", func(w http.ResponseWriter, r *http.Request) {
		p, err := g.payment(r.Context(), r.PathValue("order"))
		writeFound(w, r, p, err)
	})
	return mux
}

// writeFound answers a GET of one row: 404 when there is none (sql.ErrNoRows), 500 when
// reading it failed, else v as the JSON body.
func writeFound(w http.ResponseWriter, r *http.Request, v any, err error) {
	switch {
	case errors.Is(err, sql.ErrNoRows):
		http.NotFound(w, r)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		writeJSON(w, http.StatusOK, v)
	}
}

// writeJSON writes v as the JSON response body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// runGateway is the gateway subcommand: the HTTP API and the relay of its outbox.
func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	var f serviceFlags
	f.register(fs, "127.0.0.1:8081", "gateway.db")
	crashAfter := fs.Int("crash-after-commit", 0, "SIGKILL this process right after the commit of its Nth payment, before it answers (0: never)")
	d, logger, err := f.open(ctx, fs, args, "gateway", true, stderr)
	if err != nil {
		return err
	}
	defer d.close()
	g, err := NewGateway(ctx, d, logger)
	if err != nil {
		return err
	}
	if *crashAfter > 0 {
		var n atomic.Int64
		g.afterCommit = func(p Payment) {
			if n.Add(1) == int64(*crashAfter) {
				fmt.Fprintf(stdout, "gateway: payment %s of %s committed; crashing (SIGKILL) right after the commit\n", p.ID, p.OrderID)
				if self, err := os.FindProcess(os.Getpid()); err == nil {
					_ = self.Kill() // SIGKILL on Unix: no deferred function, no shutdown runs
				}
			}
		}
	}
	return runService(ctx, stdout, "gateway", f.addr, g.Handler(),
		func(ctx context.Context) error { return runRelay(ctx, d, f.natsURL, "shop-gateway", logger) })
}

// runService serves h on addr and runs the workers until ctx ends or one fails.
func runService(ctx context.Context, stdout io.Writer, name, addr string, h http.Handler, workers ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(workers)+1)
	go func() { errs <- serve(ctx, addr, h) }()
	for _, w := range workers {
		go func() { errs <- w(ctx) }()
	}
	fmt.Fprintf(stdout, "%s: listening on http://%s\n", name, addr)
	var first error
	for range len(workers) + 1 {
		err := <-errs
		if first == nil && err != nil && ctx.Err() == nil {
			first = err
		}
		cancel()
	}
	return first
}
