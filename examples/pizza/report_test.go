package main

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"

	"github.com/outboxgo/outbox/dialect/sqlite"
)

// TestReportFindsViolations writes a broken saga into the four databases: the checks the
// scenario tests rely on must name each fault.
func TestReportFindsViolations(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	dbs := map[string]dbOptions{}
	ddl := map[string][]string{"order": orderDDL, "payment": paymentDDL, "kitchen": kitchenDDL, "delivery": deliveryDDL}
	rows := map[string][]string{
		"order": {
			`INSERT INTO orders VALUES ('order-0001', 'ada', 'margherita', 850, 'delivered', 3, 0, 0)`,
			`INSERT INTO orders VALUES ('order-0002', 'ken', 'hawaiian', 990, 'cancelled', 3, 0, 0)`,
			`INSERT INTO orders VALUES ('order-0003', 'bo', 'marinara', 750, 'paid', 1, 0, 0)`,
		},
		"payment": {
			`INSERT INTO charges (order_id, amount_cents, charged_at) VALUES ('order-0001', 850, 0), ('order-0001', 850, 0), ('order-0002', 990, 0), ('order-0003', 750, 0), ('order-0009', 100, 0)`,
			`INSERT INTO refunds (order_id, amount_cents, refunded_at) VALUES ('order-0001', 850, 0)`,
		},
		"kitchen": {`INSERT INTO tickets (order_id, pizza, decision, decided_at) VALUES ('order-0002', 'hawaiian', 'rejected', 0)`},
		"delivery": {
			`INSERT INTO deliveries (order_id, courier, delivered_at) VALUES ('order-0001', 'Ana', 0), ('order-0002', 'Bo', 0)`,
		},
	}
	for _, name := range serviceNames {
		dbs[name] = dbOptions{path: filepath.Join(dir, name+".db")}
		db, err := sql.Open("sqlite", sqlite.DSN(dbs[name].path))
		if err != nil {
			t.Fatal(err)
		}
		d := &database{db: db, dialect: "sqlite", table: func(n string) string { return n }}
		for _, stmt := range append(slices.Clone(ddl[name]), rows[name]...) {
			if _, err := db.ExecContext(ctx, d.q(replaceID(stmt, d))); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
		_ = db.Close()
	}
	r, err := readReport(ctx, dbs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"order-0001 charged 2 times",
		"order-0009 charged but no such order",
		"order-0001 refunded but delivered",
		"order-0002 delivered but cancelled",
		"order-0001 delivered with 2 charge(s), 1 delivery(ies)",
		"order-0002 cancelled with 1 charge(s), 0 refund(s)",
	}
	for _, w := range want {
		if !slices.Contains(r.Violations, w) {
			t.Errorf("violation %q not reported; got %q", w, r.Violations)
		}
	}
	if len(r.Violations) != len(want) {
		t.Errorf("violations %q; want exactly %q", r.Violations, want)
	}
	if r.Orders != 3 || r.Final() != 2 || r.Charges != 5 || r.Refunds != 1 || r.Deliveries != 2 || r.Rejected != 1 {
		t.Errorf("report %+v", r)
	}
}
