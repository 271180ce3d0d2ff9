package natsinbox_test

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
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/inboxtest"
	"github.com/outboxgo/outbox/inbox/natsinbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/sink"
	natssink "github.com/outboxgo/outbox/sink/nats"
)

// env is one test's broker destination and inbox.
type env struct {
	t       testing.TB
	nc      *natsgo.Conn
	url     string
	stream  string
	prefix  string
	sink    *natssink.Sink
	pool    *pgxpool.Pool
	schema  string
	effects string

	mu  sync.Mutex
	got []effect // handler calls that committed, in order
}

type effect struct {
	id, key string
}

func newEnv(t testing.TB, opts ...natstest.StreamOption) *env {
	t.Helper()
	nc := natstest.Connect(t)
	return newEnvOn(t, nc, opts...)
}

func newEnvOn(t testing.TB, nc *natsgo.Conn, opts ...natstest.StreamOption) *env {
	t.Helper()
	stream, prefix := natstest.Stream(t, nc, opts...)
	e := &env{t: t, nc: nc, url: nc.ConnectedUrl(), stream: stream, prefix: prefix}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := natssink.New(ctx, natssink.Config{URL: e.url, SubjectPrefix: prefix, Source: "test", Logger: logtest.New(t)})
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

// inbox returns a migrated inbox on the test's schema.
func (e *env) inbox(icfg inbox.Config) *inbox.Inbox {
	e.t.Helper()
	icfg.Pool = e.pool
	icfg.Table = e.schema + ".inbox"
	if icfg.Consumer == "" {
		icfg.Consumer = "c1"
	}
	if icfg.Backoff == nil {
		icfg.Backoff = func(int) time.Duration { return 50 * time.Millisecond }
	}
	icfg.Logger = logtest.New(e.t)
	ctx := context.Background()
	in, err := inbox.New(ctx, icfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		e.t.Fatal(err)
	}
	return in
}

// handler records an effect row and the call; fail, when set, decides the handler's error.
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
		e.got = append(e.got, effect{m.ID, m.Key})
		e.mu.Unlock()
		return nil
	}
}

// run starts an adapter; the returned stop cancels it and waits for Run, failing on its error.
func (e *env) run(cfg natsinbox.Config, h inbox.Handler) (stop func()) {
	e.t.Helper()
	return e.start(cfg, func(ctx context.Context, a *natsinbox.Adapter) error { return a.Run(ctx, h) })
}

// runBulk is run with RunBulk.
func (e *env) runBulk(cfg natsinbox.Config, h inbox.BulkHandler) (stop func()) {
	e.t.Helper()
	return e.start(cfg, func(ctx context.Context, a *natsinbox.Adapter) error { return a.RunBulk(ctx, h) })
}

func (e *env) start(cfg natsinbox.Config, run func(context.Context, *natsinbox.Adapter) error) (stop func()) {
	e.t.Helper()
	if cfg.URL == "" && cfg.Conn == nil {
		cfg.URL = e.url
	}
	cfg.Stream = e.stream
	cfg.SubjectPrefix = e.prefix
	if cfg.Logger == nil {
		cfg.Logger = logtest.New(e.t)
	}
	a, err := natsinbox.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, a) }()
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

// waitFor polls cond until it holds or the deadline passes.
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

// effectsOf returns the committed effects' message ids, in commit order, for key.
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

// settled reports whether the durable consumer has nothing pending nor unacknowledged.
func (e *env) settled(durable string) bool {
	js, err := jetstream.New(e.nc)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, e.stream, durable)
	if err != nil {
		return false
	}
	info, err := c.Info(ctx)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
}

func TestRoundTrip(t *testing.T) {
	for _, batch := range []int{1, 8} {
		t.Run("batch="+strconv.Itoa(batch), func(t *testing.T) {
			// The shortest duplicate window, so that JetStream stores most of RoundTrip's
			// copies and the inbox, not the stream, finds them duplicates.
			e := newEnv(t, func(c *jetstream.StreamConfig) { c.Duplicates = 100 * time.Millisecond })
			inboxtest.RoundTrip(t, inboxtest.RoundTripHarness{
				Sink: dupOK{e.sink}, Topic: "orders", Source: "test",
				Run: func(ctx context.Context, in *inbox.Inbox, h inbox.Handler) error {
					a, err := natsinbox.New(natsinbox.Config{Inbox: in, URL: e.url, Stream: e.stream, SubjectPrefix: e.prefix,
						Batch: batch, Logger: logtest.New(t)})
					if err != nil {
						return err
					}
					return a.Run(ctx, h)
				},
			})
		})
	}
}

// dupOK reports the sink's Duplicate results (JetStream already holds the message: a
// success by the sink's contract) as nil, which RoundTrip expects of a success.
type dupOK struct{ sink.Sink }

func (d dupOK) Publish(ctx context.Context, recs []*outbox.Record) []error {
	res := d.Sink.Publish(ctx, recs)
	for i, err := range res {
		if sink.IsDuplicate(err) {
			res[i] = nil
		}
	}
	return res
}

// TestDuplicates: the durable consumer is deleted after everything was applied and acked, so
// JetStream delivers the whole stream again (as after lost acks): one effect per message.
func TestDuplicates(t *testing.T) {
	e := newEnv(t)
	in := e.inbox(inbox.Config{})
	var recs []*outbox.Record
	for i := range 20 {
		recs = append(recs, record("orders", "k"+strconv.Itoa(i%3)))
	}
	e.publish(recs...)
	stop := e.run(natsinbox.Config{Inbox: in}, e.handler(nil))
	waitFor(t, "20 effects", 30*time.Second, func() bool { return e.effectCount() == 20 })
	waitFor(t, "the consumer to settle", 10*time.Second, func() bool { return e.settled("c1") })
	stop()
	js, _ := jetstream.New(e.nc)
	if err := js.DeleteConsumer(context.Background(), e.stream, "c1"); err != nil {
		t.Fatal(err)
	}
	var calls sync.Map
	h := e.handler(nil)
	e.run(natsinbox.Config{Inbox: in}, func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		calls.Store(m.ID, true)
		return h(ctx, tx, m)
	})
	last := record("orders", "k0")
	e.publish(last)
	waitFor(t, "the last message", 30*time.Second, func() bool { return e.effectCount() == 21 })
	waitFor(t, "the consumer to settle", 10*time.Second, func() bool { return e.settled("c1") })
	n := 0
	calls.Range(func(any, any) bool { n++; return true })
	if n != 1 {
		t.Errorf("the handler ran for %d messages on redelivery, want 1 (the new one)", n)
	}
	if got := e.effectCount(); got != 21 {
		t.Errorf("%d effects, want 21", got)
	}
}

// TestPoison: a message whose handler always fails gets MaxAttempts deliveries, then is in
// the dead letters with the error, acked; later messages of its key and others flow.
func TestPoison(t *testing.T) {
	e := newEnv(t)
	in := e.inbox(inbox.Config{MaxAttempts: 3})
	poison := record("orders", "k")
	var mu sync.Mutex
	tries := 0
	e.run(natsinbox.Config{Inbox: in, MaxDeliver: 10, AckWait: 5 * time.Second}, e.handler(func(m inbox.Message) error {
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
	waitFor(t, "nothing pending on the consumer", 10*time.Second, func() bool { return e.settled("c1") })
}

// TestOrderWithRetry: m1 of key k fails twice then succeeds; m2, m3 wait for it; key j is
// not held up.
func TestOrderWithRetry(t *testing.T) {
	for _, batch := range []int{1, 16} {
		t.Run("batch="+strconv.Itoa(batch), func(t *testing.T) {
			e := newEnv(t)
			in := e.inbox(inbox.Config{Backoff: func(int) time.Duration { return 300 * time.Millisecond }})
			m1, m2, m3 := record("orders", "k"), record("orders", "k"), record("orders", "k")
			n1, n2 := record("orders", "j"), record("orders", "j")
			var mu sync.Mutex
			fails := 0
			e.run(natsinbox.Config{Inbox: in, Batch: batch}, e.handler(func(m inbox.Message) error {
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
			if first.key != "j" {
				t.Errorf("first effect of key %q, want j (not blocked by k's retry)", first.key)
			}
			waitFor(t, "the consumer to settle", 10*time.Second, func() bool { return e.settled("c1") })
		})
	}
}

// TestCrashRedelivered: the adapter is stopped while the handler runs, twice; with
// MaxAttempts 1 the message is dead-lettered on the third delivery, which happens only if
// the redeliveries are marked Redelivered (and so counted before the handler runs).
func TestCrashRedelivered(t *testing.T) {
	e := newEnv(t)
	in := e.inbox(inbox.Config{MaxAttempts: 1})
	m := record("orders", "k")
	e.publish(m)
	calls := 0
	for range 3 {
		entered := make(chan struct{}, 1)
		stop := e.run(natsinbox.Config{Inbox: in, MaxDeliver: 5}, func(ctx context.Context, tx outbox.Tx, msg inbox.Message) error {
			entered <- struct{}{}
			<-ctx.Done() // "crashes": never returns before the adapter is stopped
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
}

// TestServerRestart: a private server is restarted while the adapter consumes; every message
// is applied once.
func TestServerRestart(t *testing.T) {
	srv := natstest.StartServer(t, nil)
	nc := natstest.ConnectURL(t, srv.URL())
	e := newEnvOn(t, nc)
	in := e.inbox(inbox.Config{})
	e.run(natsinbox.Config{Inbox: in, URL: srv.URL(), Batch: 10, ReconnectWait: 50 * time.Millisecond}, e.handler(nil))
	var ids []string
	pub := func(n int) {
		for range n {
			r := record("orders", "k"+strconv.Itoa(len(ids)%4))
			ids = append(ids, r.ID.String())
			e.publish(r)
		}
	}
	pub(50)
	waitFor(t, "50 effects", 30*time.Second, func() bool { return e.effectCount() == 50 })
	srv.Restart()
	waitFor(t, "the test connection to reconnect", 10*time.Second, func() bool { return nc.IsConnected() })
	waitFor(t, "the sink to publish again", 20*time.Second, func() bool {
		r := record("orders", "k0")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if e.sink.Publish(ctx, []*outbox.Record{r})[0] != nil {
			return false
		}
		ids = append(ids, r.ID.String())
		return true
	})
	pub(50)
	want := len(ids)
	waitFor(t, "every effect", 60*time.Second, func() bool { return e.effectCount() == want })
	waitFor(t, "the consumer to settle", 20*time.Second, func() bool { return e.settled("c1") })
	var distinct int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(DISTINCT message_id) FROM `+e.effects).Scan(&distinct); err != nil {
		t.Fatal(err)
	}
	if got := e.effectCount(); got != want || distinct != want {
		t.Errorf("%d effects of %d messages, want %d of %d", got, distinct, want, want)
	}
}

// TestBatch: batch mode applies everything once, in each key's order, with a failure.
func TestBatch(t *testing.T) {
	e := newEnv(t)
	in := e.inbox(inbox.Config{})
	var recs []*outbox.Record
	for i := range 400 {
		recs = append(recs, record("orders", "k"+strconv.Itoa(i%7)))
	}
	failing := recs[100].ID.String()
	var once sync.Once
	e.run(natsinbox.Config{Inbox: in, Batch: 64}, e.handler(func(m inbox.Message) error {
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
	waitFor(t, "the consumer to settle", 10*time.Second, func() bool { return e.settled("c1") })
}

// TestRunBulk: RunBulk hands a batch's new messages to one call, in order per key; a batch
// whose handler fails is redone one message at a time, so only the failing message waits
// for its retry (and its key's later messages behind it).
func TestRunBulk(t *testing.T) {
	e := newEnv(t)
	in := e.inbox(inbox.Config{})
	var recs []*outbox.Record
	for i := range 300 {
		recs = append(recs, record("orders", "k"+strconv.Itoa(i%5)))
	}
	failing := recs[50].ID.String()
	var (
		mu       sync.Mutex
		calls    int
		largest  int
		failOnce sync.Once
	)
	one := e.handler(nil)
	e.runBulk(natsinbox.Config{Inbox: in, Batch: 64}, func(ctx context.Context, tx outbox.Tx, ms []inbox.Message) error {
		mu.Lock()
		calls++
		largest = max(largest, len(ms))
		mu.Unlock()
		for _, m := range ms {
			var err error
			if m.ID == failing {
				failOnce.Do(func() { err = errors.New("once") })
			}
			if err != nil {
				return err
			}
		}
		for _, m := range ms {
			if err := one(ctx, tx, m); err != nil {
				return err
			}
		}
		return nil
	})
	e.publish(recs...)
	waitFor(t, "300 effects", 60*time.Second, func() bool { return e.effectCount() == 300 })
	for k := range 5 {
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
	mu.Lock()
	defer mu.Unlock()
	if largest < 2 || calls >= 300 {
		t.Errorf("%d bulk calls, the largest of %d messages: want batches", calls, largest)
	}
}

// TestReject: a message that is not an outbox CloudEvent is dead-lettered under its
// broker id and acked; the next message flows.
func TestReject(t *testing.T) {
	e := newEnv(t)
	in := e.inbox(inbox.Config{})
	e.run(natsinbox.Config{Inbox: in}, e.handler(nil))
	js, _ := jetstream.New(e.nc)
	ack, err := js.Publish(context.Background(), e.prefix+"orders", []byte("not a cloudevent"))
	if err != nil {
		t.Fatal(err)
	}
	good := record("orders", "k")
	e.publish(good)
	waitFor(t, "the good message", 30*time.Second, func() bool { return e.effectCount() == 1 })
	dead, err := in.DeadLetters(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("nats:%s:%d", e.stream, ack.Sequence)
	if len(dead) != 1 || dead[0].Message.ID != want || dead[0].Error == "" || string(dead[0].Message.Payload) != "not a cloudevent" {
		t.Fatalf("dead letters = %+v, want %s with the reason", dead, want)
	}
	waitFor(t, "the consumer to settle", 10*time.Second, func() bool { return e.settled("c1") })
}

func TestConfigValidate(t *testing.T) {
	pool, schema := pgtest.Schema(t)
	in, err := inbox.New(context.Background(), inbox.Config{Pool: pool, Table: schema + ".inbox", Consumer: "c1", MaxAttempts: 5})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := inbox.New(context.Background(), inbox.Config{Pool: pool, Table: schema + ".inbox", Consumer: "has space"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		cfg   natsinbox.Config
		field string
	}{
		{natsinbox.Config{Stream: "S"}, "inbox"},
		{natsinbox.Config{Inbox: in}, "stream"},
		{natsinbox.Config{Inbox: in, Stream: "a.b"}, "stream"},
		{natsinbox.Config{Inbox: bad, Stream: "S"}, "durable"},
		{natsinbox.Config{Inbox: in, Stream: "S", MaxDeliver: 5}, "max_deliver"},
		{natsinbox.Config{Inbox: in, Stream: "S", Batch: -1}, "batch"},
		{natsinbox.Config{Inbox: in, Stream: "S", AckWait: -time.Second}, "ack_wait"},
		{natsinbox.Config{Inbox: in, Stream: "S", URL: "nats://u:secret@h:4222", Conn: &natsgo.Conn{}}, "url"},
		{natsinbox.Config{Inbox: in, Stream: "S", URL: "nats://u:secret@:4222"}, "url"},
		{natsinbox.Config{Inbox: in, Stream: "S", FilterSubjects: []string{"a b"}}, "filter_subjects"},
	} {
		err := c.cfg.Validate()
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("Validate(%+v) = %v, want a ConfigError on %s", c.field, err, c.field)
			continue
		}
		if _, err := natsinbox.New(c.cfg); !errors.As(err, &ce) {
			t.Errorf("New did not return the ConfigError on %s: %v", c.field, err)
		}
		if s := err.Error(); contains(s, "secret") {
			t.Errorf("error quotes the password: %s", s)
		}
	}
	if err := (natsinbox.Config{Inbox: in, Stream: "S", MaxDeliver: 6}).Validate(); err != nil {
		t.Errorf("MaxDeliver 6 > MaxAttempts 5: %v", err)
	}
	if err := (natsinbox.Config{Inbox: bad, Stream: "S", Durable: "ok"}).Validate(); err != nil {
		t.Errorf("explicit durable: %v", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
