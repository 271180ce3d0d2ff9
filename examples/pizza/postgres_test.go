package main

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	testservice "github.com/outboxgo/outbox/internal/testutil/service"
)

// TestSagaUnderKillsPostgres is TestSagaUnderKills with each service in a PostgreSQL
// schema of its own.
func TestSagaUnderKillsPostgres(t *testing.T) {
	testservice.Require(t, "PostgreSQL")
	prefix := dropSchemas(t)
	sagaUnderKills(t, *sagaOrders, func(name string) dbOptions {
		return dbOptions{databaseURL: pgtest.URL(), schema: prefix + name}
	})
}

// dropSchemas returns a fresh prefix for the services' schemas, dropped at the end of the
// test.
func dropSchemas(t *testing.T) string {
	t.Helper()
	prefix := "pizza_" + strings.ReplaceAll(outbox.NewID().String()[24:], "-", "") + "_"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pgtest.URL())
		if err != nil {
			t.Errorf("dropping the schemas: %v", err)
			return
		}
		defer conn.Close(ctx)
		for _, n := range serviceNames {
			if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+prefix+n+` CASCADE`); err != nil {
				t.Errorf("dropping schema %s: %v", prefix+n, err)
			}
		}
	})
	return prefix
}

// TestDemoPostgres runs the demo on PostgreSQL, each service in a schema of its own, with
// the payment service's crash, on the embedded broker.
func TestDemoPostgres(t *testing.T) {
	testservice.Require(t, "PostgreSQL")
	bin := buildPizza(t)
	prefix := dropSchemas(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--database-url", pgtest.URL(), "--schema-prefix", prefix,
		"--orders", "6", "--rate", "10", "--crash-after-commit", "2", "--ack-wait", "1s", "--duration", "60s").CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"PostgreSQL schema " + prefix + "payment", "*** CRASH", "OK: every order"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in the demo's output:\n%s", want, out)
		}
	}
	conn, err := pgx.Connect(ctx, pgtest.URL())
	if err != nil {
		t.Fatalf("PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	var charges int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+prefix+`payment.charges`).Scan(&charges); err != nil || charges != 6 {
		t.Errorf("%d charges in %spayment.charges (%v); want 6", charges, prefix, err)
	}
}
