package inbox_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/inboxtest"
	"github.com/outboxgo/outbox/internal/testutil/mysqltest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

func pgOutbox(t *testing.T, pool *pgxpool.Pool, schema string) string {
	t.Helper()
	st, err := postgres.New(context.Background(), postgres.Config{Pool: pool, Table: schema + ".outbox"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.MigrateUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	return schema + ".outbox"
}

func TestPostgresPgx(t *testing.T) {
	inboxtest.Run(t, func(t *testing.T) inboxtest.Env {
		pool, schema := pgtest.Schema(t)
		return inboxtest.Env{
			Config: inbox.Config{Table: schema + ".inbox", Pool: pool},
			Begin:  func(ctx context.Context) (outbox.Tx, error) { return pool.Begin(ctx) },
			Exec: func(ctx context.Context, q string, args ...any) (int64, error) {
				tag, err := pool.Exec(ctx, q, args...)
				return tag.RowsAffected(), err
			},
			Count: func(ctx context.Context, q string, args ...any) (n int, err error) {
				err = pool.QueryRow(ctx, q, args...).Scan(&n)
				return n, err
			},
			Quote:      func(suffix string) string { return `"` + schema + `"."inbox` + suffix + `"` },
			Outbox:     pgOutbox(t, pool, schema),
			Concurrent: true,
		}
	})
}

func sqlEnv(t *testing.T, db *sql.DB) inboxtest.Env {
	return inboxtest.Env{
		Begin: func(ctx context.Context) (outbox.Tx, error) { return db.BeginTx(ctx, nil) },
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
		Concurrent: true,
	}
}

func TestPostgresDatabaseSQL(t *testing.T) {
	inboxtest.Run(t, func(t *testing.T) inboxtest.Env {
		pool, schema := pgtest.Schema(t)
		db := stdlib.OpenDBFromPool(pool)
		t.Cleanup(func() { _ = db.Close() })
		env := sqlEnv(t, db)
		env.Config = inbox.Config{Table: schema + ".inbox", DB: db}
		env.Quote = func(suffix string) string { return `"` + schema + `"."inbox` + suffix + `"` }
		env.Outbox = pgOutbox(t, pool, schema)
		return env
	})
}

func TestMariaDB(t *testing.T) {
	inboxtest.Run(t, func(t *testing.T) inboxtest.Env {
		db, _, _ := mysqltest.Database(t)
		// The consumer's transactions run at READ COMMITTED, the isolation the concurrency
		// guarantee is stated for.
		db.SetMaxOpenConns(20)
		env := sqlEnv(t, db)
		env.Begin = func(ctx context.Context) (outbox.Tx, error) {
			return db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
		}
		env.Config = inbox.Config{Dialect: outbox.MySQL, DB: db}
		env.Quote = func(suffix string) string { return "`inbox" + suffix + "`" }
		st, err := mysql.New(context.Background(), mysql.Config{DB: db})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.MigrateUp(context.Background()); err != nil {
			t.Fatal(err)
		}
		env.Outbox = "outbox"
		return env
	})
}

func TestConfigValidate(t *testing.T) {
	db := &sql.DB{}
	for _, tt := range []struct {
		field string
		cfg   inbox.Config
	}{
		{"consumer", inbox.Config{DB: db}},
		{"consumer", inbox.Config{DB: db, Consumer: string(make([]byte, 201))}},
		{"consumer", inbox.Config{DB: db, Consumer: "a\nb"}},
		{"dialect", inbox.Config{DB: db, Consumer: "c", Dialect: "oracle"}},
		{"table", inbox.Config{DB: db, Consumer: "c", Table: "bad-name"}},
		{"table", inbox.Config{DB: db, Consumer: "c", Table: "s.t", Dialect: outbox.SQLite}},
		{"max_attempts", inbox.Config{DB: db, Consumer: "c", MaxAttempts: -1}},
		{"retention", inbox.Config{DB: db, Consumer: "c", Retention: inbox.ClockSkewMargin}},
		{"key_retention", inbox.Config{DB: db, Consumer: "c", KeyRetention: 1, Retention: 2 * inbox.DefaultRetention}},
		{"db", inbox.Config{Consumer: "c"}},
		{"db", inbox.Config{Consumer: "c", DB: db, Pool: &pgxpool.Pool{}}},
		{"pool", inbox.Config{Consumer: "c", Pool: &pgxpool.Pool{}, Dialect: outbox.MySQL}},
	} {
		err := tt.cfg.Validate()
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field || !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want a ConfigError on %s", tt.cfg, err, tt.field)
		}
		if _, err := inbox.New(context.Background(), tt.cfg); err == nil {
			t.Errorf("New(%+v) succeeded", tt.cfg)
		}
	}
	if err := (inbox.Config{DB: db, Consumer: "billing"}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestProcessRefusesNonTx(t *testing.T) {
	in, err := inbox.New(context.Background(), inbox.Config{DB: &sql.DB{}, Consumer: "c"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = in.Process(context.Background(), &sql.DB{}, inboxtest.Msg("", 0), nil)
	if !errors.Is(err, outbox.ErrUnsupportedTx) {
		t.Fatalf("err = %v, want ErrUnsupportedTx", err)
	}
	if _, err := in.Attempt(context.Background(), inbox.Message{}); !errors.Is(err, inbox.ErrInvalidMessage) {
		t.Fatalf("empty id: err = %v", err)
	}
}

// On a pgx pool, Deliver sends the id's record with the BEGIN: the handler's transaction
// still behaves as pgx's (savepoints, the effects and the id commit together), and a record
// that fails leaves no transaction open on the pool's connection.
func TestDeliverPipelined(t *testing.T) {
	pool, schema := pgtest.Schema(t)
	ctx := context.Background()
	in, err := inbox.New(ctx, inbox.Config{Pool: pool, Table: schema + ".inbox", Consumer: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	effects := schema + ".effects"
	if _, err := pool.Exec(ctx, `CREATE TABLE `+effects+` (message_id text NOT NULL, what text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	count := func(id string) (n int) {
		t.Helper()
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+effects+` WHERE message_id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	m := inboxtest.Msg("k", 1)
	nested := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		ptx := tx.(pgx.Tx)
		if _, err := ptx.Exec(ctx, `INSERT INTO `+effects+` VALUES ($1, 'outer')`, m.ID); err != nil {
			return err
		}
		sp, err := ptx.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := sp.Exec(ctx, `INSERT INTO `+effects+` VALUES ($1, 'rolled back')`, m.ID); err != nil {
			return err
		}
		if err := sp.Rollback(ctx); err != nil {
			return err
		}
		sp, err = ptx.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := sp.Exec(ctx, `INSERT INTO `+effects+` VALUES ($1, 'released')`, m.ID); err != nil {
			return err
		}
		return sp.Commit(ctx)
	}
	if o, err := in.Deliver(ctx, inbox.Delivery{Message: m}, nested); err != nil || o.Result != inbox.Applied {
		t.Fatalf("deliver = %+v, %v", o, err)
	}
	if n := count(m.ID); n != 2 {
		t.Fatalf("effects = %d, want 2 (outer, released)", n)
	}
	if o, err := in.Deliver(ctx, inbox.Delivery{Message: m}, nested); err != nil || o.Result != inbox.Duplicate {
		t.Fatalf("redeliver = %+v, %v", o, err)
	}
	// A handler error rolls the id back with the effects: the message is still new.
	p := inboxtest.Msg("k", 2)
	fail := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		if _, err := tx.(pgx.Tx).Exec(ctx, `INSERT INTO `+effects+` VALUES ($1, 'x')`, m.ID); err != nil {
			return err
		}
		return errors.New("no")
	}
	if o, err := in.Deliver(ctx, inbox.Delivery{Message: p}, fail); err != nil || !o.Retry {
		t.Fatalf("failing deliver = %+v, %v", o, err)
	}
	if n := count(p.ID); n != 0 {
		t.Fatalf("effects of the failed delivery = %d", n)
	}
	// A redelivery is counted before the handler runs, in a transaction of its own: a
	// handler that dies with its connection (as in a crash) leaves the count behind.
	q := inboxtest.Msg("k", 3)
	crash := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		return tx.(pgx.Tx).Conn().Close(ctx)
	}
	if _, err := in.Deliver(ctx, inbox.Delivery{Message: q, Redelivered: true}, crash); err == nil {
		t.Fatal("a delivery whose connection died succeeded")
	}
	var attempts int
	if err := pool.QueryRow(ctx, `SELECT attempts FROM `+schema+`.inbox_attempts WHERE message_id = $1`, q.ID).Scan(&attempts); err != nil || attempts != 1 {
		t.Fatalf("attempts after the crash = %d, %v; want 1", attempts, err)
	}
	if o, err := in.Deliver(ctx, inbox.Delivery{Message: q, Redelivered: true}, nested); err != nil || o.Result != inbox.Applied || o.Attempt != 2 {
		t.Fatalf("delivery after the crash = %+v, %v; want applied at attempt 2", o, err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+schema+`.inbox_attempts WHERE message_id = $1`, q.ID).Scan(&attempts); err != nil || attempts != 0 {
		t.Fatalf("attempt rows after it applied = %d, %v; want 0", attempts, err)
	}
	// The record fails (its table is gone): an error naming it, and every connection of the
	// pool is outside any transaction afterwards.
	if _, err := pool.Exec(ctx, `ALTER TABLE `+schema+`.inbox RENAME TO gone`); err != nil {
		t.Fatal(err)
	}
	for _, redelivered := range []bool{false, true} {
		_, err = in.Deliver(ctx, inbox.Delivery{Message: inboxtest.Msg("k", 4), Redelivered: redelivered}, nested)
		if err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Fatalf("deliver (redelivered %v) with no inbox table: %v, want the database's error", redelivered, err)
		}
	}
	conns := pool.AcquireAllIdle(ctx)
	for _, c := range conns {
		if s := c.Conn().PgConn().TxStatus(); s != 'I' {
			t.Errorf("a pool connection in transaction status %q", s)
		}
		c.Release()
	}
}
