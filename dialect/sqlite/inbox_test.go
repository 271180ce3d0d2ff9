package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/sqlite"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/inboxtest"
)

// TestInbox runs the inbox's scenario suite on SQLite (its statements are plain SQL over
// *sql.DB, so package inbox needs no SQLite driver; this module has one).
func TestInbox(t *testing.T) {
	inboxtest.Run(t, func(t *testing.T) inboxtest.Env {
		db, err := sql.Open("sqlite", sqlite.DSN(filepath.Join(t.TempDir(), "inbox.db")))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		st, err := sqlite.New(context.Background(), sqlite.Config{DB: db})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.MigrateUp(context.Background()); err != nil {
			t.Fatal(err)
		}
		return inboxtest.Env{
			Config: inbox.Config{Dialect: outbox.SQLite, DB: db},
			Begin:  func(ctx context.Context) (outbox.Tx, error) { return db.BeginTx(ctx, nil) },
			Exec: func(ctx context.Context, q string, args ...any) (int64, error) {
				res, err := db.ExecContext(ctx, q, args...)
				if err != nil {
					return 0, err
				}
				return res.RowsAffected()
			},
			Count: func(ctx context.Context, q string, args ...any) (n int, err error) {
				err = db.QueryRowContext(ctx, q, args...).Scan(&n)
				return n, err
			},
			Quote:  func(suffix string) string { return `"inbox` + suffix + `"` },
			Outbox: "outbox",
		}
	})
}
