// Package pgtest gives each test its own PostgreSQL schema on the real server.
//
// The server is OUTBOX_TEST_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/test.
// A test fails (never skips) when the server is unreachable: run scripts/services.sh. With
// -short, Schema skips the test (see package internal/testutil/service).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox/internal/testutil/service"
)

// DefaultURL is the test database when OUTBOX_TEST_DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// URL returns the test database URL.
func URL() string {
	if u := os.Getenv("OUTBOX_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// Schema creates a uniquely named schema, dropped (with everything in it) when the test ends,
// and returns a pool and the schema name. The pool's sessions carry the schema name as their
// application_name. Qualify table names with it: schema + ".outbox".
func Schema(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	service.Require(t, "PostgreSQL")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	schema := Name(t)
	cfg, err := pgxpool.ParseConfig(URL())
	if err != nil {
		t.Fatalf("pgtest: parsing %s: %v", URL(), err)
	}
	// Sessions of this test are findable in pg_stat_activity by the schema name.
	cfg.ConnConfig.RuntimeParams["application_name"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: connecting to %s: %v (is PostgreSQL up? run scripts/services.sh)", URL(), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		t.Fatalf("pgtest: connecting to %s: %v (is PostgreSQL up? run scripts/services.sh)", URL(), err)
	}
	if _, err := pool.Exec(ctx, `CREATE SCHEMA "`+schema+`"`); err != nil {
		pool.Close()
		t.Fatalf("pgtest: creating schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, `DROP SCHEMA "`+schema+`" CASCADE`); err != nil {
			t.Errorf("pgtest: dropping schema %s: %v", schema, err)
		}
		pool.Close()
	})
	return pool, schema
}

// Name returns a unique lowercase identifier derived from the test name.
func Name(t testing.TB) string {
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
		if b.Len() >= 24 {
			break
		}
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return "t_" + b.String() + "_" + hex.EncodeToString(rnd[:])
}
