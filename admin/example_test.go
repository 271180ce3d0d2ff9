package admin_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox/admin"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

// An admin server over a PostgreSQL outbox, on a test listener.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.URL())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := postgres.New(ctx, postgres.Config{Pool: pool, Table: "outbox"})
	if err != nil {
		log.Fatal(err)
	}
	srv, err := admin.New(admin.Config{Store: store, Table: "outbox", Token: "an-admin-token-of-24-bytes"})
	if err != nil {
		log.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	resp, err := http.Get(hs.URL + "/healthz")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.StatusCode, " ", string(body))
	// Output:
	// 200 {
	//   "status": "ok"
	// }
}
