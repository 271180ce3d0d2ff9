package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/sqlite"
)

// StatusTopic is the topic of the order service's status events.
const StatusTopic = "order.status"

// Statuses an order goes through, in the demo's order.
var Statuses = []string{"placed", "accepted", "preparing", "ready", "out_for_delivery", "delivered"}

// StatusEvent is the payload of an order.status event.
type StatusEvent struct {
	Order    string `json:"order"`
	Customer string `json:"customer"`
	Status   string `json:"status"`
	Version  int    `json:"version"` // 1 for the first status, +1 per change
}

const ordersSchema = `
CREATE TABLE IF NOT EXISTS orders (
  id         TEXT PRIMARY KEY,
  customer   TEXT NOT NULL,
  status     TEXT NOT NULL,
  version    INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);`

// OrderService owns the orders table; each status change commits with its order.status event
// in the order service's own outbox.
type OrderService struct {
	store *sqlite.Store
}

// NewOrderService creates the orders table in store's database.
func NewOrderService(ctx context.Context, store *sqlite.Store) (*OrderService, error) {
	if _, err := store.DB().ExecContext(ctx, ordersSchema); err != nil {
		return nil, fmt.Errorf("creating the orders table: %w", err)
	}
	return &OrderService{store: store}, nil
}

// Place creates an order in its first status.
func (o *OrderService) Place(ctx context.Context, order, customer string) (StatusEvent, error) {
	return o.change(ctx, order, customer, Statuses[0], true)
}

// SetStatus moves an order to status and enqueues the event, in one transaction.
func (o *OrderService) SetStatus(ctx context.Context, order, status string) (StatusEvent, error) {
	return o.change(ctx, order, "", status, false)
}

func (o *OrderService) change(ctx context.Context, order, customer, status string, create bool) (StatusEvent, error) {
	tx, err := o.store.DB().BeginTx(ctx, nil)
	if err != nil {
		return StatusEvent{}, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	ev := StatusEvent{Order: order, Customer: customer, Status: status, Version: 1}
	now := time.Now().UnixMicro()
	if create {
		_, err = tx.ExecContext(ctx, `INSERT INTO orders (id, customer, status, version, updated_at) VALUES (?, ?, ?, 1, ?)`, order, customer, status, now)
	} else {
		err = tx.QueryRowContext(ctx, `UPDATE orders SET status = ?, version = version + 1, updated_at = ? WHERE id = ?
RETURNING customer, version`, status, now, order).Scan(&ev.Customer, &ev.Version)
	}
	if err != nil {
		if err == sql.ErrNoRows {
			return StatusEvent{}, fmt.Errorf("order %s: no such order", order)
		}
		return StatusEvent{}, fmt.Errorf("order %s: %w", order, err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return StatusEvent{}, err
	}
	if err := o.store.Writer().Enqueue(ctx, tx, outbox.Message{Topic: StatusTopic, Key: order, Payload: body}); err != nil {
		return StatusEvent{}, err
	}
	return ev, tx.Commit()
}
