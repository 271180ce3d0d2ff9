// Package mysqltest gives each test its own database on the real MariaDB (or MySQL) server.
//
// The server is OUTBOX_TEST_MYSQL_DSN, default root@tcp(127.0.0.1:3306)/test (a
// github.com/go-sql-driver/mysql DSN). A test fails (never skips) when the server is
// unreachable: run scripts/services.sh. With -short, Database skips the test (see package
// internal/testutil/service).
package mysqltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/outboxgo/outbox/internal/testutil/service"
)

// DefaultDSN is the test server when OUTBOX_TEST_MYSQL_DSN is not set.
const DefaultDSN = "root@tcp(127.0.0.1:3306)/test?parseTime=true"

// DSN returns the test server's DSN.
func DSN() string {
	if d := os.Getenv("OUTBOX_TEST_MYSQL_DSN"); d != "" {
		return d
	}
	return DefaultDSN
}

// Database creates a uniquely named database (utf8mb4), dropped with everything in it when
// the test ends, and returns a pool on it, its DSN (for code that opens its own pool) and its
// name.
func Database(t testing.TB) (*sql.DB, string, string) {
	t.Helper()
	service.Require(t, "MariaDB")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := mysql.ParseDSN(DSN())
	if err != nil {
		t.Fatalf("mysqltest: parsing %s: %v", DSN(), err)
	}
	admin, err := open(ctx, cfg)
	if err != nil {
		t.Fatalf("mysqltest: connecting to %s: %v (is MariaDB up? run scripts/services.sh)", cfg.Addr, err)
	}
	name := Name(t)
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		_ = admin.Close()
		t.Fatalf("mysqltest: creating database: %v", err)
	}
	cfg = cfg.Clone()
	cfg.DBName = name
	db, err := open(ctx, cfg)
	if err != nil {
		_ = admin.Close()
		t.Fatalf("mysqltest: connecting to database %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// A failed test may leave a transaction open (a claim never finished), whose locks
		// would hold up the DROP: end the sessions still using the database first.
		killSessions(ctx, admin, name)
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
			t.Errorf("mysqltest: dropping database %s: %v", name, err)
		}
		_ = admin.Close()
	})
	return db, cfg.FormatDSN(), name
}

func killSessions(ctx context.Context, admin *sql.DB, database string) {
	rows, err := admin.QueryContext(ctx, `SELECT ID FROM information_schema.PROCESSLIST WHERE DB = ? AND ID <> CONNECTION_ID()`, database) //nolint:rowserrcheck // best effort, as the query's own error: kill the sessions listed
	if err != nil {
		return
	}
	defer rows.Close()
	var ids []uint64
	for rows.Next() {
		var id uint64
		if rows.Scan(&id) == nil {
			ids = append(ids, id)
		}
	}
	for _, id := range ids {
		_, _ = admin.ExecContext(ctx, "KILL "+strconv.FormatUint(id, 10))
	}
}

func open(ctx context.Context, cfg *mysql.Config) (*sql.DB, error) {
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// Name returns a unique lowercase identifier derived from the test name (at most 35
// characters, within MySQL's 64).
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
