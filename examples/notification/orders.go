package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/outboxgo/outbox"
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

// OrderService owns the orders table; each status change commits with its order.status event
// in the order service's own outbox.
type OrderService struct {
	db     *sql.DB
	writer *outbox.Writer
	orders string // the orders table's name
}

// NewOrderService creates the orders table (named orders) in db; writer enqueues into the
// order service's outbox in the same database.
func NewOrderService(ctx context.Context, db *sql.DB, writer *outbox.Writer, orders string) (*OrderService, error) {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+orders+` (
  id         TEXT PRIMARY KEY,
  customer   TEXT NOT NULL,
  status     TEXT NOT NULL,
  version    BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
)`); err != nil {
		return nil, fmt.Errorf("creating the orders table: %w", err)
	}
	return &OrderService{db: db, writer: writer, orders: orders}, nil
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
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return StatusEvent{}, err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	ev := StatusEvent{Order: order, Customer: customer, Status: status, Version: 1}
	now := time.Now().UnixMicro()
	if create {
		_, err = tx.ExecContext(ctx, `INSERT INTO `+o.orders+` (id, customer, status, version, updated_at) VALUES ($1, $2, $3, 1, $4)`, order, customer, status, now)
	} else {
		err = tx.QueryRowContext(ctx, `UPDATE `+o.orders+` SET status = $1, version = version + 1, updated_at = $2 WHERE id = $3
RETURNING customer, version`, status, now, order).Scan(&ev.Customer, &ev.Version)
	}
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return StatusEvent{}, fmt.Errorf("order %s: no such order", order)
		}
		return StatusEvent{}, fmt.Errorf("order %s: %w", order, err)
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return StatusEvent{}, err
	}
	if err := o.writer.Enqueue(ctx, tx, outbox.Message{Topic: StatusTopic, Key: order, Payload: body}); err != nil {
		return StatusEvent{}, err
	}
	return ev, tx.Commit()
}
