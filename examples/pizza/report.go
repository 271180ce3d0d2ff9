package main

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/sqlite"
)

// report is the saga's state read from the four services' databases, and what is wrong
// with it.
type report struct {
	Orders     int
	Status     map[string]int // orders by status
	Charges    int            // charge rows
	Refunds    int            // refund rows
	Deliveries int            // delivery rows
	Rejected   int            // kitchen tickets rejected
	Violations []string       // broken invariants: must stay empty
	orders     map[string]string
}

// Final counts the orders that reached the end of the saga: delivered, or cancelled (and
// refunded).
func (r *report) Final() int { return r.Status["delivered"] + r.Status["cancelled"] }

// readDB opens a service's database for reading.
func readDB(o dbOptions) (*database, error) {
	if o.databaseURL == "" {
		db, err := sql.Open("sqlite", sqlite.DSN(o.path))
		if err != nil {
			return nil, err
		}
		return &database{db: db, dialect: outbox.SQLite, table: func(n string) string { return n }, close: func() { _ = db.Close() }}, nil
	}
	cc, err := pgx.ParseConfig(o.databaseURL)
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDB(*cc)
	return &database{db: db, dialect: outbox.Postgres, table: func(n string) string { return o.schema + "." + n }, close: func() { _ = db.Close() }}, nil
}

// countByOrder reads "order_id, count" rows.
func countByOrder(ctx context.Context, d *database, query string) (map[string]int, int, error) {
	rows, err := d.db.QueryContext(ctx, d.q(query))
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	m, total := map[string]int{}, 0
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			return nil, 0, err
		}
		m[id] = n
		total += n
	}
	return m, total, rows.Err()
}

// readReport reads the saga's state from the services' databases (order, payment, kitchen,
// delivery) and checks the invariants: nobody charged twice, no charge without an order, a
// refund only for a cancelled order and exactly one, a delivery only for a delivered order
// and exactly one, every finished order charged once.
func readReport(ctx context.Context, dbs map[string]dbOptions) (*report, error) {
	open := map[string]*database{}
	defer func() {
		for _, d := range open {
			d.close()
		}
	}()
	for _, name := range []string{"order", "payment", "kitchen", "delivery"} {
		d, err := readDB(dbs[name])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		open[name] = d
	}
	r := &report{Status: map[string]int{}, orders: map[string]string{}}
	if err := readOrders(ctx, open["order"], r); err != nil {
		return nil, fmt.Errorf("order: %w", err)
	}
	r.Orders = len(r.orders)

	charges, nc, err := countByOrder(ctx, open["payment"], `SELECT order_id, count(*) FROM {t:charges} GROUP BY order_id`)
	if err != nil {
		return nil, fmt.Errorf("payment: %w", err)
	}
	refunds, nr, err := countByOrder(ctx, open["payment"], `SELECT order_id, count(*) FROM {t:refunds} GROUP BY order_id`)
	if err != nil {
		return nil, fmt.Errorf("payment: %w", err)
	}
	deliveries, nd, err := countByOrder(ctx, open["delivery"], `SELECT order_id, count(*) FROM {t:deliveries} GROUP BY order_id`)
	if err != nil {
		return nil, fmt.Errorf("delivery: %w", err)
	}
	tickets, _, err := countByOrder(ctx, open["kitchen"], `SELECT order_id, count(*) FROM {t:tickets} GROUP BY order_id`)
	if err != nil {
		return nil, fmt.Errorf("kitchen: %w", err)
	}
	if err := open["kitchen"].db.QueryRowContext(ctx, open["kitchen"].q(`SELECT count(*) FROM {t:tickets} WHERE decision = 'rejected'`)).Scan(&r.Rejected); err != nil {
		return nil, fmt.Errorf("kitchen: %w", err)
	}
	r.Charges, r.Refunds, r.Deliveries = nc, nr, nd

	bad := func(format string, args ...any) { r.Violations = append(r.Violations, fmt.Sprintf(format, args...)) }
	for _, id := range slices.Sorted(maps.Keys(charges)) {
		if _, ok := r.orders[id]; !ok {
			bad("%s charged but no such order", id)
		}
		if charges[id] > 1 {
			bad("%s charged %d times", id, charges[id])
		}
	}
	for _, id := range slices.Sorted(maps.Keys(tickets)) {
		if tickets[id] > 1 {
			bad("%s cooked/decided %d times", id, tickets[id])
		}
	}
	for _, id := range slices.Sorted(maps.Keys(refunds)) {
		if refunds[id] > 1 {
			bad("%s refunded %d times", id, refunds[id])
		}
		if charges[id] == 0 {
			bad("%s refunded but never charged", id)
		}
		if s := r.orders[id]; s == "delivered" {
			bad("%s refunded but delivered", id)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(deliveries)) {
		if deliveries[id] > 1 {
			bad("%s delivered %d times", id, deliveries[id])
		}
		if s := r.orders[id]; s == "cancelled" || s == "rejected" {
			bad("%s delivered but %s", id, s)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(r.orders)) {
		switch r.orders[id] {
		case "delivered":
			if charges[id] != 1 || deliveries[id] != 1 {
				bad("%s delivered with %d charge(s), %d delivery(ies)", id, charges[id], deliveries[id])
			}
		case "cancelled":
			if charges[id] != 1 || refunds[id] != 1 {
				bad("%s cancelled with %d charge(s), %d refund(s)", id, charges[id], refunds[id])
			}
		}
	}
	return r, nil
}

// readOrders reads the orders' statuses into r.
func readOrders(ctx context.Context, d *database, r *report) error {
	rows, err := d.db.QueryContext(ctx, d.q(`SELECT id, status FROM {t:orders}`))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, status string
		if err := rows.Scan(&id, &status); err != nil {
			return err
		}
		r.orders[id] = status
		r.Status[status]++
	}
	return rows.Err()
}
