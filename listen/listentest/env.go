package listentest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/listen"
)

// Env is a service of the pattern on one PostgreSQL schema: its outbox table, its
// self-consumer's inbox and its state table (accounts: key, version, value), for tests that
// run replicas of it.
type Env struct {
	Pool   *pgxpool.Pool
	Schema string
	Inbox  *inbox.Inbox
	Writer *outbox.Writer
	// Apply writes a state into the table, guarded by version (listen.ExecApply).
	Apply listen.Apply

	mu   sync.Mutex
	last int64 // the greatest outbox row id Consume delivered
}

// NewEnv migrates the outbox, inbox and state tables into schema (which the caller drops).
func NewEnv(t testing.TB, pool *pgxpool.Pool, schema string) *Env {
	t.Helper()
	ctx := context.Background()
	st, err := postgres.New(ctx, postgres.Config{Pool: pool, Table: schema + ".outbox"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	in, err := inbox.New(ctx, inbox.Config{Pool: pool, Table: schema + ".inbox", Consumer: "accounts"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE "`+schema+`".accounts (key text PRIMARY KEY, version bigint NOT NULL, value bytea NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	w, err := outbox.NewWriter(outbox.WriterConfig{Table: schema + ".outbox"})
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Pool: pool, Schema: schema, Inbox: in, Writer: w, Apply: listen.ExecApply(
		`INSERT INTO "` + schema + `".accounts AS a (key, version, value) VALUES ($1, $2, $3)
		 ON CONFLICT (key) DO UPDATE SET version = excluded.version, value = excluded.value
		 WHERE a.version < excluded.version`)}
}

// Load reads a key's applied state from the table.
func (e *Env) Load(ctx context.Context, key string) (listen.State, bool, error) {
	return e.load(ctx, e.Pool, key)
}

// LoadTx is Load in tx (a pgx.Tx).
func (e *Env) LoadTx(ctx context.Context, tx outbox.Tx, key string) (listen.State, bool, error) {
	q, ok := tx.(pgx.Tx)
	if !ok {
		return listen.State{}, false, fmt.Errorf("%w: %T", outbox.ErrUnsupportedTx, tx)
	}
	return e.load(ctx, q, key)
}

func (e *Env) load(ctx context.Context, q interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}, key string) (listen.State, bool, error) {
	s := listen.State{Key: key}
	err := q.QueryRow(ctx, `SELECT version, value FROM "`+e.Schema+`".accounts WHERE key = $1`, key).Scan(&s.Version, &s.Value)
	if errors.Is(err, pgx.ErrNoRows) {
		return listen.State{}, false, nil
	}
	return s, err == nil, err
}

// Replica returns a Service of the env on cache (with LoadTx unless cfg.LoadTx is set to
// a function already).
func (e *Env) Replica(t testing.TB, cache listen.Cache, cfg listen.Config) *listen.Service {
	t.Helper()
	cfg.Inbox, cfg.Cache, cfg.Writer, cfg.Load = e.Inbox, cache, e.Writer, e.Load
	if cfg.LoadTx == nil {
		cfg.LoadTx = e.LoadTx
	}
	s, err := listen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Messages returns the outbox rows after id after, decoded as an adapter decodes the
// relay's publications (the row id is the Position).
func (e *Env) Messages(ctx context.Context, after int64) ([]inbox.Message, error) {
	rows, err := e.Pool.Query(ctx, `SELECT id, message_id::text, topic, coalesce(key, ''), type, payload, headers, created_at
		FROM "`+e.Schema+`".outbox WHERE id > $1 ORDER BY id`, after)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ms []inbox.Message
	for rows.Next() {
		m := inbox.Message{Source: "listentest"}
		if err := rows.Scan(&m.Position, &m.ID, &m.Topic, &m.Key, &m.Type, &m.Payload, &m.Headers, &m.Time); err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	return ms, rows.Err()
}

// Consume delivers the outbox rows not delivered yet, in order, to the inbox with handler
// (the self-consumer's: Service.Handler), as an adapter does, and returns the outcomes.
func (e *Env) Consume(t testing.TB, handler inbox.Handler) []inbox.Outcome {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	ctx := context.Background()
	ms, err := e.Messages(ctx, e.last)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]inbox.Outcome, 0, len(ms))
	for _, m := range ms {
		o, err := e.Inbox.Deliver(ctx, inbox.Delivery{Message: m}, handler)
		if err != nil {
			t.Fatalf("delivering %s: %v", m.ID, err)
		}
		if o.Retry {
			t.Fatalf("delivering %s (key %s, version %s): handler failed: %v", m.ID, m.Key, m.Headers[listen.VersionHeader], o.Err)
		}
		out = append(out, o)
		e.last = m.Position
	}
	return out
}

// Table returns the applied states, by key.
func (e *Env) Table(t testing.TB) map[string]listen.State {
	t.Helper()
	rows, err := e.Pool.Query(context.Background(), `SELECT key, version, value FROM "`+e.Schema+`".accounts`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]listen.State{}
	for rows.Next() {
		var s listen.State
		if err := rows.Scan(&s.Key, &s.Version, &s.Value); err != nil {
			t.Fatal(err)
		}
		out[s.Key] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// Add is a Decide adding n to a counter (its value in decimal): the event carries the new
// value, as the default StateOf expects.
func Add(n int) listen.Decide {
	return func(cur listen.State, _ bool) (outbox.Message, listen.State, error) {
		v := 0
		if len(cur.Value) > 0 {
			var err error
			if v, err = strconv.Atoi(string(cur.Value)); err != nil {
				return outbox.Message{}, listen.State{}, err
			}
		}
		next := []byte(strconv.Itoa(v + n))
		return outbox.Message{Topic: "accounts", Type: "account.changed", Payload: next}, listen.State{Value: next}, nil
	}
}

// Post writes through s in a transaction of its own (without a lock), commits, fills the
// cache: a POST handler.
func (e *Env) Post(t testing.TB, s *listen.Service, key string, decide listen.Decide) (listen.State, listen.Token) {
	t.Helper()
	ctx := context.Background()
	tx, err := e.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	p, err := s.Write(ctx, tx, key, decide)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Committed(ctx); err != nil {
		t.Fatal(err)
	}
	return p.State(), p.Token()
}

// Eventually polls cond every few milliseconds until it holds, failing t after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WriteLockedSerializes runs 2 writers on each replica, 8 increments each, then the
// self-consumer, and checks every version 1..n was decided once and the sum is whole.
func WriteLockedSerializes(t *testing.T, env *Env, replicas []*listen.Service) {
	t.Helper()
	const perWriter = 8
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		versions = map[int64]int{}
		errs     []error
	)
	for _, r := range replicas {
		for range 2 {
			wg.Go(func() {
				for range perWriter {
					st, _, err := r.WriteLocked(context.Background(), env.Pool, "acct-1", Add(1))
					mu.Lock()
					if err != nil {
						errs = append(errs, err)
					} else {
						versions[st.Version]++
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	n := int64(len(replicas) * 2 * perWriter)
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	for v := int64(1); v <= n; v++ {
		if versions[v] != 1 {
			t.Fatalf("version %d decided %d times (all: %v)", v, versions[v], versions)
		}
	}
	env.Consume(t, replicas[0].Handler(env.Apply))
	if row := env.Table(t)["acct-1"]; row.Version != n || string(row.Value) != strconv.FormatInt(n, 10) {
		t.Fatalf("table %+v, want version and value %d", row, n)
	}
}
