package listen_test

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/listen"
	"github.com/outboxgo/outbox/listen/listentest"
)

func memCache(t *testing.T) *listen.MemoryCache {
	t.Helper()
	c, err := listen.NewMemoryCache(listen.MemoryCacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newEnv(t *testing.T) *listentest.Env {
	pool, schema := pgtest.Schema(t)
	return listentest.NewEnv(t, pool, schema)
}

func read(t *testing.T, s *listen.Service, key string) (listen.State, bool) {
	t.Helper()
	st, ok, err := s.Read(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return st, ok
}

// TestReadYourWriteSameReplica: a GET right after the POST, on the writer's replica, sees
// the write before the self-consumer ran (the table is still empty); once it ran the table
// holds the same state.
func TestReadYourWriteSameReplica(t *testing.T) {
	env := newEnv(t)
	a := env.Replica(t, memCache(t), listen.Config{Logger: logtest.New(t)})
	st, tok := env.Post(t, a, "acct-1", listentest.Add(5))
	if st.Version != 1 || string(st.Value) != "5" || tok.IsZero() {
		t.Fatalf("written %+v, token %q", st, tok)
	}
	if got, ok := read(t, a, "acct-1"); !ok || got.Version != 1 || string(got.Value) != "5" {
		t.Fatalf("GET after POST = %+v, %v; want version 1 value 5", got, ok)
	}
	if n := len(env.Table(t)); n != 0 {
		t.Fatalf("table has %d rows before the self-consumer ran: the write did not only enqueue", n)
	}
	st, _ = env.Post(t, a, "acct-1", listentest.Add(3)) // decided on the cache's version 1
	if st.Version != 2 || string(st.Value) != "8" {
		t.Fatalf("second write %+v, want version 2 value 8", st)
	}
	outs := env.Consume(t, a.Handler(env.Apply))
	if len(outs) != 2 || outs[0].Result != inbox.Applied || outs[1].Result != inbox.Applied {
		t.Fatalf("outcomes %+v", outs)
	}
	if row := env.Table(t)["acct-1"]; row.Version != 2 || string(row.Value) != "8" {
		t.Fatalf("table %+v, want version 2 value 8", row)
	}
}

// TestOtherReplicaWaitsWithToken: with in-process caches, replica B does not see A's write
// (nor, holding an older state, its next one) until the self-consumer applied it; with A's
// token, B waits for that and then reads it.
func TestOtherReplicaWaitsWithToken(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	a := env.Replica(t, memCache(t), listen.Config{Logger: logtest.New(t)})
	b := env.Replica(t, memCache(t), listen.Config{Logger: logtest.New(t)})
	_, tok := env.Post(t, a, "acct-1", listentest.Add(5))
	parsed, err := listen.ParseToken(tok.String()) // through the client's header
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := read(t, b, "acct-1"); ok {
		t.Fatal("B sees A's write before it is applied: the caches are not private")
	}
	err = b.WaitApplied(ctx, parsed, 30*time.Millisecond)
	if !errors.Is(err, listen.ErrNotApplied) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitApplied with no consumer = %v, want ErrNotApplied and DeadlineExceeded", err)
	}

	// The self-consumer runs on A, a little later; B's request waits for it.
	handler := a.Handler(env.Apply)
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		time.Sleep(50 * time.Millisecond) // the consumer's lag, which B must wait out
		env.Consume(t, handler)
	}()
	start := time.Now()
	st, ok, err := b.ReadAfter(ctx, "acct-1", parsed, 10*time.Second)
	if err != nil || !ok || st.Version != 1 || string(st.Value) != "5" {
		t.Fatalf("B's ReadAfter = %+v, %v, %v; want version 1 value 5", st, ok, err)
	}
	<-consumed
	t.Logf("B waited %v for A's write", time.Since(start).Round(time.Millisecond))

	// B's cache now holds version 1; A writes version 2: B's plain Read is stale (its
	// cache), ReadAfter with the token is not.
	_, tok2 := env.Post(t, a, "acct-1", listentest.Add(1))
	if st, _ := read(t, b, "acct-1"); st.Version != 1 {
		t.Fatalf("B's Read = %+v; want its cached version 1 (documented staleness)", st)
	}
	env.Consume(t, handler)
	if st, ok, err := b.ReadAfter(ctx, "acct-1", tok2, 10*time.Second); err != nil || !ok || st.Version != 2 || string(st.Value) != "6" {
		t.Fatalf("B's ReadAfter(token 2) = %+v, %v, %v; want version 2 value 6", st, ok, err)
	}
	if st, _ := read(t, b, "acct-1"); st.Version != 2 {
		t.Fatalf("B's Read after ReadAfter = %+v; want the refreshed version 2", st)
	}
	// Writes on B decide on the newer of its cache and the table: no version reused.
	if st, _ := env.Post(t, b, "acct-1", listentest.Add(1)); st.Version != 3 || string(st.Value) != "7" {
		t.Fatalf("B's write = %+v, want version 3 value 7", st)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := b.WaitApplied(cctx, tok2.Join(listen.TokenOf(outbox.NewID())), time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitApplied with a cancelled context = %v", err)
	}
}

// TestConsumerStopped: with no self-consumer running, reads are served from the cache;
// once it runs, the table converges to the cache's states.
func TestConsumerStopped(t *testing.T) {
	env := newEnv(t)
	cache := memCache(t)
	a := env.Replica(t, cache, listen.Config{Logger: logtest.New(t)})
	want := map[string]int{}
	for i := range 20 {
		key := "acct-" + strconv.Itoa(i%4)
		env.Post(t, a, key, listentest.Add(i))
		want[key] += i
	}
	for key, v := range want {
		if st, ok := read(t, a, key); !ok || string(st.Value) != strconv.Itoa(v) || st.Version != 5 {
			t.Fatalf("Read(%s) = %+v, %v; want version 5 value %d", key, st, ok, v)
		}
	}
	if n := len(env.Table(t)); n != 0 {
		t.Fatalf("table has %d rows with no consumer", n)
	}
	// The consumer starts (a new replica: the old one's cache is gone with it).
	b := env.Replica(t, memCache(t), listen.Config{Logger: logtest.New(t)})
	if outs := env.Consume(t, b.Handler(env.Apply)); len(outs) != 20 {
		t.Fatalf("consumed %d events, want 20", len(outs))
	}
	table := env.Table(t)
	for key := range want {
		cached, _, err := cache.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if row := table[key]; row.Version != cached.Version || string(row.Value) != string(cached.Value) {
			t.Fatalf("%s: table %+v, cache %+v: not converged", key, row, cached)
		}
		if st, _ := read(t, b, key); st.Version != 5 { // B's cache filled by its handler
			t.Fatalf("B reads %+v", st)
		}
	}
}

// TestDuplicateAndOutOfOrder: an event redelivered, or an older event delivered after a
// newer one, moves neither the table nor the cache back.
func TestDuplicateAndOutOfOrder(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	logs := &logtest.Buffer{}
	cache := memCache(t)
	a := env.Replica(t, cache, listen.Config{Logger: logs.Logger()})
	for range 3 {
		env.Post(t, a, "acct-1", listentest.Add(10))
	}
	ms, err := env.Messages(ctx, 0)
	if err != nil || len(ms) != 3 {
		t.Fatalf("messages %d, %v", len(ms), err)
	}
	// Version 3 first, on a replica whose cache is empty.
	fresh := memCache(t)
	b := env.Replica(t, fresh, listen.Config{Logger: logs.Logger()})
	h := b.Handler(env.Apply)
	deliver := func(m inbox.Message, want inbox.Result) {
		t.Helper()
		o, err := env.Inbox.Deliver(ctx, inbox.Delivery{Message: m, Redelivered: true}, h)
		if err != nil || o.Retry || o.Result != want {
			t.Fatalf("deliver version %s = %+v, %v; want %v", m.Headers[listen.VersionHeader], o, err, want)
		}
	}
	check := func(when string) {
		t.Helper()
		if row := env.Table(t)["acct-1"]; row.Version != 3 || string(row.Value) != "30" {
			t.Fatalf("%s: table %+v, want version 3 value 30", when, row)
		}
		for name, c := range map[string]*listen.MemoryCache{"writer": cache, "consumer": fresh} {
			if st, ok, _ := c.Get(ctx, "acct-1"); !ok || st.Version != 3 || string(st.Value) != "30" {
				t.Fatalf("%s: %s cache %+v, %v; want version 3", when, name, st, ok)
			}
		}
	}
	deliver(ms[2], inbox.Applied)
	check("after version 3")
	deliver(ms[0], inbox.Applied) // a first delivery, out of order: the inbox applies it, the version guard does not
	deliver(ms[1], inbox.Applied)
	check("after the older versions")
	deliver(ms[2], inbox.Duplicate)
	deliver(ms[0], inbox.Duplicate)
	check("after duplicates")
	if n := strings.Count(logs.String(), "event not applied"); n != 2 {
		t.Fatalf("%d events logged as not applied, want 2:\n%s", n, logs)
	}
	// The handler never lowers a cache holding a newer state, even when apply writes (a
	// table restored from a backup, say).
	if _, err := env.Pool.Exec(ctx, `DELETE FROM "`+env.Schema+`".accounts`); err != nil {
		t.Fatal(err)
	}
	m := ms[0]
	m.ID = outbox.NewID().String() // as a re-sent copy
	deliver(m, inbox.Applied)
	if st, _, _ := fresh.Get(ctx, "acct-1"); st.Version != 3 {
		t.Fatalf("cache moved back to %+v", st)
	}
}

// TestSameVersionTwiceWithoutLock shows the documented limit of Write: two unserialized
// writes of one key that read the same state decide the same version; the first consumed is
// applied, the other skipped and logged (a lost update).
// WriteLocked is the remedy (TestWriteLockedSerializes).
func TestSameVersionTwiceWithoutLock(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	logs := &logtest.Buffer{}
	a := env.Replica(t, memCache(t), listen.Config{Logger: logs.Logger()})
	b := env.Replica(t, memCache(t), listen.Config{Logger: logs.Logger()})
	txA, err := env.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = txA.Rollback(ctx) }()
	pa, err := a.Write(ctx, txA, "acct-1", listentest.Add(1))
	if err != nil {
		t.Fatal(err)
	}
	_, tokB := env.Post(t, b, "acct-1", listentest.Add(100)) // B commits first, both read nothing
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pa.Committed(ctx); err != nil {
		t.Fatal(err)
	}
	if pa.State().Version != 1 {
		t.Fatalf("A decided %+v", pa.State())
	}
	env.Consume(t, a.Handler(env.Apply))
	// A's event has the lower row id (its insert came first): the relay publishes it first.
	if row := env.Table(t)["acct-1"]; row.Version != 1 || string(row.Value) != "1" {
		t.Fatalf("table %+v; want A's (consumed first)", row)
	}
	if !strings.Contains(logs.String(), "event not applied") || !strings.Contains(logs.String(), tokB.String()) {
		t.Fatalf("B's skipped event not logged:\n%s", logs)
	}
	if err := a.WaitApplied(ctx, tokB.Join(pa.Token()), time.Second); err != nil {
		t.Fatalf("both events are processed (one skipped): %v", err)
	}
}

// TestWriteLockedSerializes: concurrent increments of one key from two replicas sharing a
// cache, through WriteLocked, decide distinct successive versions and lose none.
func TestWriteLockedSerializes(t *testing.T) {
	env := newEnv(t)
	shared := memCache(t)
	replicas := []*listen.Service{
		env.Replica(t, shared, listen.Config{Logger: logtest.New(t)}),
		env.Replica(t, shared, listen.Config{Logger: logtest.New(t)}),
	}
	listentest.WriteLockedSerializes(t, env, replicas)

	noTx, err := listen.New(listen.Config{Inbox: env.Inbox, Cache: shared, Writer: env.Writer, Load: env.Load})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := noTx.WriteLocked(context.Background(), env.Pool, "acct-1", listentest.Add(1)); !errors.Is(err, listen.ErrNoLoadTx) {
		t.Fatalf("WriteLocked without LoadTx = %v, want ErrNoLoadTx", err)
	}
}

// failingCache fails every call: a cache server that is down.
type failingCache struct{}

var errDown = errors.New("cache down")

func (failingCache) Get(context.Context, string) (listen.State, bool, error) {
	return listen.State{}, false, errDown
}
func (failingCache) Put(context.Context, listen.State) (bool, error) { return false, errDown }

// TestCacheDown: reads fall back to the table; writes fail (deciding on the table alone
// could reuse a version) and enqueue nothing.
func TestCacheDown(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	good := env.Replica(t, memCache(t), listen.Config{Logger: logtest.New(t)})
	env.Post(t, good, "acct-1", listentest.Add(2))
	env.Consume(t, good.Handler(env.Apply))
	logs := &logtest.Buffer{}
	down := env.Replica(t, failingCache{}, listen.Config{Logger: logs.Logger()})
	if st, ok := read(t, down, "acct-1"); !ok || st.Version != 1 || string(st.Value) != "2" {
		t.Fatalf("Read with the cache down = %+v, %v", st, ok)
	}
	if !strings.Contains(logs.String(), "cache down") {
		t.Fatalf("cache failure not logged:\n%s", logs)
	}
	tx, err := env.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := down.Write(ctx, tx, "acct-1", listentest.Add(1)); !errors.Is(err, errDown) {
		t.Fatalf("Write with the cache down = %v, want the cache's error", err)
	}
	if _, _, err := down.WriteLocked(ctx, env.Pool, "acct-1", listentest.Add(1)); !errors.Is(err, errDown) {
		t.Fatalf("WriteLocked with the cache down = %v", err)
	}
	if ms, _ := env.Messages(ctx, 0); len(ms) != 1 {
		t.Fatalf("%d events enqueued, want the first only", len(ms))
	}
}

// TestWriteChecks: what Write refuses, enqueuing nothing.
func TestWriteChecks(t *testing.T) {
	env := newEnv(t)
	ctx := context.Background()
	a := env.Replica(t, memCache(t), listen.Config{Logger: logtest.New(t)})
	boom := errors.New("insufficient funds")
	for _, tt := range []struct {
		name   string
		key    string
		decide listen.Decide
		want   error
		text   string
	}{
		{"empty key", "", listentest.Add(1), listen.ErrInvalidState, ""},
		{"decide fails", "k", func(listen.State, bool) (outbox.Message, listen.State, error) {
			return outbox.Message{}, listen.State{}, boom
		}, boom, ""},
		{"state differs from event", "k", func(listen.State, bool) (outbox.Message, listen.State, error) {
			return outbox.Message{Topic: "t", Payload: []byte("1")}, listen.State{Value: []byte("2")}, nil
		}, listen.ErrStateMismatch, ""},
		{"other key", "k", func(listen.State, bool) (outbox.Message, listen.State, error) {
			return outbox.Message{Topic: "t", Key: "j"}, listen.State{}, nil
		}, nil, "not the state's"},
		{"version header set", "k", func(listen.State, bool) (outbox.Message, listen.State, error) {
			return outbox.Message{Topic: "t", Headers: map[string]string{"State-Version": "9"}}, listen.State{}, nil
		}, nil, "sets state-version"},
		{"invalid event", "k", func(listen.State, bool) (outbox.Message, listen.State, error) {
			return outbox.Message{}, listen.State{}, nil
		}, outbox.ErrInvalidMessage, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := env.Pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(ctx) }()
			_, err = a.Write(ctx, tx, tt.key, tt.decide)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("Write = %v, want %v %q", err, tt.want, tt.text)
			}
		})
	}
	// A pool is no transaction.
	if _, err := a.Write(ctx, env.Pool, "k", listentest.Add(1)); !errors.Is(err, outbox.ErrUnsupportedTx) {
		t.Fatalf("Write on a pool = %v", err)
	}
}

// TestHandlerRejectsForeignMessage: a message without a version is retried (and in the end
// dead-lettered) by the inbox, not applied.
func TestHandlerRejectsForeignMessage(t *testing.T) {
	env := newEnv(t)
	a := env.Replica(t, memCache(t), listen.Config{Logger: logtest.New(t)})
	for _, m := range []inbox.Message{
		{ID: outbox.NewID().String(), Topic: "accounts", Key: "acct-1", Payload: []byte("1")},
		{ID: outbox.NewID().String(), Topic: "accounts", Key: "acct-1", Headers: map[string]string{"state-version": "x"}},
		{ID: outbox.NewID().String(), Topic: "accounts", Headers: map[string]string{"state-version": "1"}},
	} {
		o, err := env.Inbox.Deliver(context.Background(), inbox.Delivery{Message: m}, a.Handler(env.Apply))
		if err != nil || !o.Retry || !errors.Is(o.Err, listen.ErrNoVersion) {
			t.Fatalf("Deliver(%+v) = %+v, %v; want a retry with ErrNoVersion", m, o, err)
		}
	}
	if n := len(env.Table(t)); n != 0 {
		t.Fatalf("%d rows applied", n)
	}
}

func TestToken(t *testing.T) {
	a, b := outbox.NewID(), outbox.NewID()
	tok := listen.TokenOf(a).Join(listen.TokenOf(b, a))
	if got := tok.String(); got != a.String()+","+b.String() {
		t.Fatalf("String = %q", got)
	}
	back, err := listen.ParseToken(" " + tok.String() + " ")
	if err != nil || back.String() != tok.String() {
		t.Fatalf("ParseToken = %v, %v", back, err)
	}
	if z, err := listen.ParseToken(""); err != nil || !z.IsZero() {
		t.Fatalf("empty token = %v, %v", z, err)
	}
	many := make([]string, listen.MaxTokenIDs+1)
	for i := range many {
		many[i] = outbox.NewID().String()
	}
	for _, bad := range []string{"x", a.String() + ",", a.String() + ",nope", strings.Join(many, ",")} {
		if _, err := listen.ParseToken(bad); !errors.Is(err, listen.ErrInvalidToken) {
			t.Errorf("ParseToken(%.50q) = %v, want ErrInvalidToken", bad, err)
		}
	}
	ids := tok.IDs()
	ids[0] = "changed"
	if tok.IDs()[0] != a.String() {
		t.Fatal("IDs shares the token's slice")
	}
}

var sqlDB sql.DB // a handle never opened: New does not touch the database

func TestConfigValidate(t *testing.T) {
	in, err := inbox.New(context.Background(), inbox.Config{DB: &sqlDB, Consumer: "c"})
	if err != nil {
		t.Fatal(err)
	}
	load := func(context.Context, string) (listen.State, bool, error) { return listen.State{}, false, nil }
	cache := memCache(t)
	for _, tt := range []struct {
		field string
		cfg   listen.Config
	}{
		{"inbox", listen.Config{Cache: cache, Load: load}},
		{"cache", listen.Config{Inbox: in, Load: load}},
		{"load", listen.Config{Inbox: in, Cache: cache}},
	} {
		_, err := listen.New(tt.cfg)
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field || !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want a ConfigError on %s", tt.cfg, err, tt.field)
		}
	}
	if _, err := listen.New(listen.Config{Inbox: in, Cache: cache, Load: load}); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}
