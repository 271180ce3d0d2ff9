package redisinbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	goredis "github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/inboxtest"
	"github.com/outboxgo/outbox/inbox/redisinbox"
	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/internal/testutil/service"
	redissink "github.com/outboxgo/outbox/sink/redis"
)

func redisAddr() string {
	if a := os.Getenv("OUTBOX_TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// env is one test's streams (under a private key prefix) and inbox.
type env struct {
	t       testing.TB
	rdb     *goredis.Client
	prefix  string
	sink    *redissink.Sink
	pool    *pgxpool.Pool
	schema  string
	effects string

	mu  sync.Mutex
	got []string // keys of committed effects, in order
}

func newEnv(t testing.TB) *env {
	t.Helper()
	service.Require(t, "Redis")
	rdb := goredis.NewClient(&goredis.Options{Addr: redisAddr()})
	t.Cleanup(func() { _ = rdb.Close() })
	e := &env{t: t, rdb: rdb, prefix: "redisinbox-test:" + strings.ReplaceAll(outbox.NewID().String(), "-", "") + ":"}
	t.Cleanup(func() {
		ctx := context.Background()
		keys, _ := rdb.Keys(ctx, e.prefix+"*").Result()
		if len(keys) > 0 {
			_ = rdb.Del(ctx, keys...).Err()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := redissink.New(ctx, redissink.Config{Addr: redisAddr(), StreamPrefix: e.prefix, Source: "test", Logger: logtest.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	e.sink = s
	e.pool, e.schema = pgtest.Schema(t)
	e.effects = pgx.Identifier{e.schema, "effects"}.Sanitize()
	if _, err := e.pool.Exec(ctx, `CREATE TABLE `+e.effects+` (n bigserial, message_id text NOT NULL, key text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) inbox(icfg inbox.Config) *inbox.Inbox {
	e.t.Helper()
	icfg.Pool, icfg.Table = e.pool, e.schema+".inbox"
	if icfg.Consumer == "" {
		icfg.Consumer = "c1"
	}
	if icfg.Backoff == nil {
		icfg.Backoff = func(int) time.Duration { return 50 * time.Millisecond }
	}
	icfg.Logger = logtest.New(e.t)
	in, err := inbox.New(context.Background(), icfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := in.MigrateUp(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	return in
}

func (e *env) handler(fail func(inbox.Message) error) inbox.Handler {
	return func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		if fail != nil {
			if err := fail(m); err != nil {
				return err
			}
		}
		if _, err := tx.(pgx.Tx).Exec(ctx, `INSERT INTO `+e.effects+` (message_id, key) VALUES ($1, $2)`, m.ID, m.Key); err != nil {
			return err
		}
		e.mu.Lock()
		e.got = append(e.got, m.Key)
		e.mu.Unlock()
		return nil
	}
}

func (e *env) run(cfg redisinbox.Config, h inbox.Handler) (stop func()) {
	e.t.Helper()
	if cfg.Addr == "" && cfg.Client == nil {
		cfg.Addr = redisAddr()
	}
	cfg.StreamPrefix = e.prefix
	if cfg.Topics == nil {
		cfg.Topics = []string{"orders"}
	}
	cfg.Consumer = cmpOr(cfg.Consumer, "p1")
	if cfg.Logger == nil {
		cfg.Logger = logtest.New(e.t)
	}
	a, err := redisinbox.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, h) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					e.t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				e.t.Error("Run did not return within 30s of its context ending")
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (e *env) publish(recs ...*outbox.Record) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, err := range e.sink.Publish(ctx, recs) {
		if err != nil {
			e.t.Fatalf("publish %d: %v", i, err)
		}
	}
}

var seq = time.Now().UnixNano() / 1000

func record(topic, key string) *outbox.Record {
	seq++
	return &outbox.Record{
		Message: outbox.Message{ID: outbox.NewID(), Topic: topic, Key: key, Type: "t", Payload: []byte(`{}`)},
		Seq:     seq, CreatedAt: time.Now().UTC(),
	}
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) effectCount() int {
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+e.effects).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

func (e *env) effectsOf(key string) []string {
	rows, err := e.pool.Query(context.Background(), `SELECT message_id FROM `+e.effects+` WHERE key = $1 ORDER BY n`, key)
	if err != nil {
		e.t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		e.t.Fatal(err)
	}
	return ids
}

// pending is the number of entries of the group pending on the stream of topic.
func (e *env) pending(topic, group string) int64 {
	p, err := e.rdb.XPending(context.Background(), e.prefix+topic, group).Result()
	if err != nil {
		return -1
	}
	return p.Count
}

func TestRoundTrip(t *testing.T) {
	for _, batch := range []int{1, 8} {
		t.Run("batch="+strconv.Itoa(batch), func(t *testing.T) {
			e := newEnv(t)
			inboxtest.RoundTrip(t, inboxtest.RoundTripHarness{
				Sink: e.sink, Topic: "orders", Source: "test",
				Run: func(ctx context.Context, in *inbox.Inbox, h inbox.Handler) error {
					a, err := redisinbox.New(redisinbox.Config{Inbox: in, Addr: redisAddr(), StreamPrefix: e.prefix,
						Topics: []string{"orders"}, Batch: batch, Logger: logtest.New(t)})
					if err != nil {
						return err
					}
					return a.Run(ctx, h)
				},
			})
		})
	}
}

// TestDuplicates: the same records published twice (Redis stores every copy) and the
// group's position reset to the start: one effect per message.
func TestDuplicates(t *testing.T) {
	e := newEnv(t)
	in := e.inbox(inbox.Config{})
	var recs []*outbox.Record
	for i := range 20 {
		recs = append(recs, record("orders", "k"+strconv.Itoa(i%3)))
	}
	e.publish(recs...)
	e.publish(recs...)
	stop := e.run(redisinbox.Config{Inbox: in}, e.handler(nil))
	waitFor(t, "20 effects and nothing pending", 30*time.Second, func() bool { return e.effectCount() == 20 && e.pending("orders", "c1") == 0 })
	stop()
	if err := e.rdb.XGroupSetID(context.Background(), e.prefix+"orders", "c1", "0").Err(); err != nil {
		t.Fatal(err)
	}
	e.run(redisinbox.Config{Inbox: in}, e.handler(nil))
	last := record("orders", "k0")
	e.publish(last)
	waitFor(t, "the last message", 30*time.Second, func() bool { return e.effectCount() == 21 && e.pending("orders", "c1") == 0 })
	if got := e.effectCount(); got != 21 {
		t.Errorf("%d effects, want 21", got)
	}
}

func TestPoison(t *testing.T) {
	e := newEnv(t)
	in := e.inbox(inbox.Config{MaxAttempts: 3})
	poison := record("orders", "k")
	var mu sync.Mutex
	tries := 0
	e.run(redisinbox.Config{Inbox: in}, e.handler(func(m inbox.Message) error {
		if m.ID == poison.ID.String() {
			mu.Lock()
			tries++
			mu.Unlock()
			return errors.New("boom")
		}
		return nil
	}))
	after, other := record("orders", "k"), record("orders", "j")
	e.publish(poison, after, other)
	waitFor(t, "the later messages", 30*time.Second, func() bool { return e.effectCount() == 2 })
	dead, err := in.DeadLetters(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Message.ID != poison.ID.String() || dead[0].Error != "boom" || dead[0].Attempts != 3 {
		t.Fatalf("dead letters = %+v, want the poison message with error boom after 3 attempts", dead)
	}
	mu.Lock()
	if tries != 3 {
		t.Errorf("handler ran %d times on the poison message, want 3", tries)
	}
	mu.Unlock()
	if ids := e.effectsOf("k"); len(ids) != 1 || ids[0] != after.ID.String() {
		t.Errorf("key k effects = %v, want the message after the poison one", ids)
	}
	waitFor(t, "nothing pending", 10*time.Second, func() bool { return e.pending("orders", "c1") == 0 })
}

func TestOrderWithRetry(t *testing.T) {
	for _, batch := range []int{1, 16} {
		t.Run("batch="+strconv.Itoa(batch), func(t *testing.T) {
			e := newEnv(t)
			in := e.inbox(inbox.Config{Backoff: func(int) time.Duration { return 300 * time.Millisecond }})
			m1, m2, m3 := record("orders", "k"), record("orders", "k"), record("orders", "k")
			n1, n2 := record("orders", "j"), record("orders", "j")
			var mu sync.Mutex
			fails := 0
			e.run(redisinbox.Config{Inbox: in, Batch: batch}, e.handler(func(m inbox.Message) error {
				mu.Lock()
				defer mu.Unlock()
				if m.ID == m1.ID.String() && fails < 2 {
					fails++
					return fmt.Errorf("failure %d", fails)
				}
				return nil
			}))
			e.publish(m1, n1, m2, m3, n2)
			waitFor(t, "5 effects", 30*time.Second, func() bool { return e.effectCount() == 5 })
			want := []string{m1.ID.String(), m2.ID.String(), m3.ID.String()}
			if got := e.effectsOf("k"); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("key k applied %v, want %v", got, want)
			}
			e.mu.Lock()
			first := e.got[0]
			e.mu.Unlock()
			if first != "j" {
				t.Errorf("first effect of key %q, want j (not blocked by k's retry)", first)
			}
			waitFor(t, "nothing pending", 10*time.Second, func() bool { return e.pending("orders", "c1") == 0 })
		})
	}
}

// TestCrashRedelivered: the adapter is stopped while the handler runs, twice; its restart
// reads its own pending entry back as a redelivery, counted: with MaxAttempts 1 the third
// delivery dead-letters it. A second consumer of the group claims a dead one's entry.
func TestCrashRedelivered(t *testing.T) {
	e := newEnv(t)
	in := e.inbox(inbox.Config{MaxAttempts: 1})
	m := record("orders", "k")
	e.publish(m)
	calls := 0
	for i := range 3 {
		entered := make(chan struct{}, 1)
		// The last run is another consumer of the group: it claims the entry of the
		// "dead" one once it has been idle for ClaimMinIdle.
		cfg := redisinbox.Config{Inbox: in, ClaimMinIdle: 200 * time.Millisecond}
		if i == 2 {
			cfg.Consumer = "p2"
		}
		stop := e.run(cfg, func(ctx context.Context, tx outbox.Tx, msg inbox.Message) error {
			entered <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		})
		select {
		case <-entered:
			calls++
			stop()
			continue
		case <-time.After(2 * time.Second):
		}
		stop()
		break
	}
	if calls != 2 {
		t.Errorf("the handler ran %d times, want 2 (the first delivery, then the counted redelivery)", calls)
	}
	dead, err := in.DeadLetters(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Message.ID != m.ID.String() {
		t.Fatalf("dead letters = %+v, want the crashing message", dead)
	}
	if n := e.pending("orders", "c1"); n != 0 {
		t.Errorf("%d entries pending, want 0", n)
	}
}

// TestConnectionCut: every connection to Redis is cut while the adapter consumes; it
// resumes, and every message is applied once.
func TestConnectionCut(t *testing.T) {
	e := newEnv(t)
	in := e.inbox(inbox.Config{})
	proxy := faultproxy.Start(t, redisAddr())
	var log logtest.Buffer
	e.run(redisinbox.Config{Inbox: in, Addr: proxy.Addr(), Batch: 10, Logger: log.Logger()}, e.handler(nil))
	var recs []*outbox.Record
	for i := range 100 {
		recs = append(recs, record("orders", "k"+strconv.Itoa(i%4)))
	}
	e.publish(recs[:50]...)
	waitFor(t, "50 effects", 30*time.Second, func() bool { return e.effectCount() == 50 })
	proxy.Cut()
	e.publish(recs[50:]...)
	waitFor(t, "the adapter to notice the outage", 10*time.Second, func() bool { return strings.Contains(log.String(), "Redis failed") })
	proxy.Restore()
	waitFor(t, "100 effects and nothing pending", 60*time.Second, func() bool {
		return e.effectCount() == 100 && e.pending("orders", "c1") == 0
	})
	var distinct int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(DISTINCT message_id) FROM `+e.effects).Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if got := e.effectCount(); got != 100 || distinct != 100 {
		t.Errorf("%d effects of %d messages, want 100 of 100", got, distinct)
	}
}

func TestBatch(t *testing.T) {
	e := newEnv(t)
	in := e.inbox(inbox.Config{})
	var recs []*outbox.Record
	for i := range 400 {
		recs = append(recs, record("orders", "k"+strconv.Itoa(i%7)))
	}
	failing := recs[100].ID.String()
	var once sync.Once
	e.run(redisinbox.Config{Inbox: in, Batch: 64}, e.handler(func(m inbox.Message) error {
		err := error(nil)
		if m.ID == failing {
			once.Do(func() { err = errors.New("once") })
		}
		return err
	}))
	e.publish(recs...)
	waitFor(t, "400 effects", 60*time.Second, func() bool { return e.effectCount() == 400 })
	for k := range 7 {
		key := "k" + strconv.Itoa(k)
		var want []string
		for _, r := range recs {
			if r.Key == key {
				want = append(want, r.ID.String())
			}
		}
		if got := e.effectsOf(key); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("key %s applied out of order or not once: %d effects, want %d", key, len(got), len(want))
		}
	}
	waitFor(t, "nothing pending", 10*time.Second, func() bool { return e.pending("orders", "c1") == 0 })
}

func TestReject(t *testing.T) {
	e := newEnv(t)
	in := e.inbox(inbox.Config{})
	e.run(redisinbox.Config{Inbox: in}, e.handler(nil))
	id, err := e.rdb.XAdd(context.Background(), &goredis.XAddArgs{Stream: e.prefix + "orders", Values: []any{"foo", "bar"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	e.publish(record("orders", "k"))
	waitFor(t, "the good message", 30*time.Second, func() bool { return e.effectCount() == 1 })
	dead, err := in.DeadLetters(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := "redis:" + e.prefix + "orders:" + id
	if len(dead) != 1 || dead[0].Message.ID != want || dead[0].Error == "" {
		t.Fatalf("dead letters = %+v, want %s with the reason", dead, want)
	}
	waitFor(t, "nothing pending", 10*time.Second, func() bool { return e.pending("orders", "c1") == 0 })
}

func TestConfigValidate(t *testing.T) {
	pool, schema := pgtest.Schema(t)
	in, err := inbox.New(context.Background(), inbox.Config{Pool: pool, Table: schema + ".inbox", Consumer: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	ok := []string{"orders"}
	for _, c := range []struct {
		cfg   redisinbox.Config
		field string
	}{
		{redisinbox.Config{Topics: ok}, "inbox"},
		{redisinbox.Config{Inbox: in}, "topics"},
		{redisinbox.Config{Inbox: in, Topics: []string{""}}, "topics"},
		{redisinbox.Config{Inbox: in, Topics: []string{"a", "b"}, Streams: map[string]string{"a": "s", "b": "s"}}, "topics"},
		{redisinbox.Config{Inbox: in, Topics: ok, Addr: "nohost", Password: "secret"}, "addr"},
		{redisinbox.Config{Inbox: in, Topics: ok, Client: goredis.NewClient(&goredis.Options{}), Password: "secret"}, "client"},
		{redisinbox.Config{Inbox: in, Topics: ok, DB: -1}, "db"},
		{redisinbox.Config{Inbox: in, Topics: ok, Batch: -1}, "batch"},
		{redisinbox.Config{Inbox: in, Topics: ok, ClaimMinIdle: -1}, "claim_min_idle"},
		{redisinbox.Config{Inbox: in, Topics: ok, Streams: map[string]string{"x": ""}}, "streams"},
	} {
		err := c.cfg.Validate()
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("Validate = %v, want a ConfigError on %s", err, c.field)
			continue
		}
		if _, err := redisinbox.New(c.cfg); !errors.As(err, &ce) {
			t.Errorf("New did not return the ConfigError on %s: %v", c.field, err)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("error quotes the password: %s", err)
		}
	}
}
