package webhookinbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/inboxtest"
	"github.com/outboxgo/outbox/inbox/webhookinbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/sink/webhook"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

type env struct {
	schema  string
	pool    *pgxpool.Pool
	in      *inbox.Inbox
	effects string
}

func newEnv(tb testing.TB, cfg inbox.Config) *env {
	tb.Helper()
	pool, schema := pgtest.Schema(tb)
	ctx := context.Background()
	cfg.Pool, cfg.Table, cfg.Consumer = pool, schema+".inbox", "webhook-test"
	in, err := inbox.New(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		tb.Fatal(err)
	}
	e := &env{schema: schema, pool: pool, in: in, effects: pgx.Identifier{schema, "effects"}.Sanitize()}
	if _, err := pool.Exec(ctx, `CREATE TABLE `+e.effects+` (n bigserial, message_id text NOT NULL)`); err != nil {
		tb.Fatal(err)
	}
	return e
}

func (e *env) insert(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
	_, err := tx.(pgx.Tx).Exec(ctx, `INSERT INTO `+e.effects+` (message_id) VALUES ($1)`, m.ID)
	return err
}

func (e *env) applied(tb testing.TB) []string {
	tb.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT message_id FROM `+e.effects+` ORDER BY n`)
	if err != nil {
		tb.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatal(err)
	}
	return ids
}

// serve starts an httptest server with a Handler for cfg and a webhook sink posting to it.
func serve(tb testing.TB, cfg webhookinbox.Config, sinkSecrets ...string) (*webhook.Sink, *httptest.Server) {
	tb.Helper()
	if cfg.Secrets == nil {
		cfg.Secrets = []string{secret}
	}
	if cfg.Logger == nil {
		cfg.Logger = logtest.New(tb)
	}
	h, err := webhookinbox.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	if sinkSecrets == nil {
		sinkSecrets = []string{secret}
	}
	return newSink(tb, srv.URL, sinkSecrets), srv
}

func newSink(tb testing.TB, base string, secrets []string) *webhook.Sink {
	tb.Helper()
	s, err := webhook.New(context.Background(), webhook.Config{URL: base + "/orders.events", Secrets: secrets,
		Source: "webhook-test", Logger: logtest.New(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func records(keys ...string) []*outbox.Record {
	recs := make([]*outbox.Record, len(keys))
	seq := time.Now().UnixNano() / 1000
	for i, k := range keys {
		recs[i] = &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: "orders.events", Key: k,
			Type: "order.noted", Payload: fmt.Appendf(nil, `{"i":%d}`, i)}, Seq: seq + int64(i), CreatedAt: time.Now().UTC()}
	}
	return recs
}

func ids(recs []*outbox.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID.String()
	}
	return out
}

// deliver plays the relay: Publish until every message is acknowledged, waiting out the
// Retry-After of each round (a few rounds at most: the test's backoff is short).
func deliver(tb testing.TB, s *webhook.Sink, recs []*outbox.Record) (rounds int) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(recs) > 0 {
		rounds++
		var left []*outbox.Record
		wait := time.Duration(0)
		for i, err := range s.Publish(context.Background(), recs) {
			if err != nil {
				left = append(left, recs[i])
				var ra *webhook.RetryAfterError
				if errors.As(err, &ra) {
					wait = max(wait, ra.Delay)
				}
			}
		}
		if len(left) > 0 && time.Now().After(deadline) {
			tb.Fatalf("%d messages never acknowledged", len(left))
		}
		recs = left
		time.Sleep(max(wait, 20*time.Millisecond)) // the sender's Retry-After, as the relay honours it
	}
	return rounds
}

func TestRoundTrip(t *testing.T) {
	var (
		mu    sync.Mutex
		h     *webhookinbox.Handler
		ready = make(chan struct{})
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ready
		mu.Lock()
		hh := h
		mu.Unlock()
		hh.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	sk, err := webhook.New(context.Background(), webhook.Config{URL: srv.URL + "/orders.round.trip", Secrets: []string{secret},
		Source: "webhook-test", Logger: logtest.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sk.Close() })
	inboxtest.RoundTrip(t, inboxtest.RoundTripHarness{
		Sink: sk, Topic: "orders.round.trip", Source: "webhook-test",
		Run: func(ctx context.Context, in *inbox.Inbox, handler inbox.Handler) error {
			hh, err := webhookinbox.New(webhookinbox.Config{Inbox: in, Handler: handler, Secrets: []string{secret}, Logger: logtest.New(t)})
			if err != nil {
				return err
			}
			mu.Lock()
			h = hh
			mu.Unlock()
			close(ready)
			return hh.Run(ctx)
		},
	})
}

// TestPoison: a handler that always fails: 503s with Retry-After until MaxAttempts requests,
// then the message is a dead letter (2xx) with the error, and the key's next message flows.
func TestPoison(t *testing.T) {
	e := newEnv(t, inbox.Config{MaxAttempts: 3, Backoff: func(int) time.Duration { return 10 * time.Millisecond }})
	recs := records("k", "k", "")
	poison := recs[0].ID.String()
	var calls atomic.Int32
	sk, _ := serve(t, webhookinbox.Config{Inbox: e.in, Handler: func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		if m.ID == poison {
			calls.Add(1)
			return errors.New("poison pill")
		}
		return e.insert(ctx, tx, m)
	}})
	deliver(t, sk, recs)
	if n := calls.Load(); n != 3 {
		t.Errorf("poison handled %d times, want MaxAttempts = 3", n)
	}
	dead, err := e.in.DeadLetters(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].Message.ID != poison || dead[0].Error != "poison pill" {
		t.Fatalf("dead letters %+v", dead)
	}
	if got := e.applied(t); !sameSet(got, ids(recs[1:])) {
		t.Errorf("effects %v, want %v", got, ids(recs[1:]))
	}
}

// TestOrderWithRetry: m1 of k fails twice: the sink holds m2, m3 of k behind it (503), and
// key j is not held; a copy re-sent after it committed is a Duplicate.
func TestOrderWithRetry(t *testing.T) {
	e := newEnv(t, inbox.Config{Backoff: func(int) time.Duration { return 10 * time.Millisecond }})
	recs := records("k", "k", "k", "j", "j")
	m1 := recs[0].ID.String()
	var fails atomic.Int32
	sk, _ := serve(t, webhookinbox.Config{Inbox: e.in, Handler: func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		if m.ID == m1 && fails.Add(1) <= 2 {
			return errors.New("not yet")
		}
		return e.insert(ctx, tx, m)
	}})
	deliver(t, sk, recs)
	got := e.applied(t)
	pos := func(id string) int { return slices.Index(got, id) }
	if !(pos(m1) < pos(recs[1].ID.String()) && pos(recs[1].ID.String()) < pos(recs[2].ID.String())) {
		t.Errorf("key k applied as %v", got)
	}
	if pos(recs[3].ID.String()) > pos(m1) || pos(recs[4].ID.String()) > pos(m1) {
		t.Errorf("key j waited for k: %v", got)
	}
	deliver(t, sk, recs) // copies: Duplicates, acknowledged, no effect
	if n := len(e.applied(t)); n != len(recs) {
		t.Errorf("%d effects, want %d", n, len(recs))
	}
}

// TestCrashCounted: a request whose handler never finishes (the client gives up, as when
// the consumer crashes) is counted: with MaxAttempts 1 the next request dead-letters it.
func TestCrashCounted(t *testing.T) {
	e := newEnv(t, inbox.Config{MaxAttempts: 1})
	recs := records("k")
	var calls atomic.Int32
	_, srv := serve(t, webhookinbox.Config{Inbox: e.in, Handler: func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		calls.Add(1)
		<-ctx.Done() // the "crash": the request ends before anything commits
		return ctx.Err()
	}})
	client := &http.Client{Timeout: 300 * time.Millisecond}
	post := func() (*http.Response, error) {
		req := signed(t, srv.URL+"/orders.events", recs[0].ID.String(), time.Now(), []byte(`{}`), secret)
		return client.Do(req)
	}
	if resp, err := post(); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("first request answered %d, want no answer (the handler hangs)", resp.StatusCode)
	}
	waitFor(t, "the attempt to be counted", 10*time.Second, func() bool {
		resp, err := post()
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusNoContent
	})
	dead, err := e.in.DeadLetters(context.Background(), 0, 10)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters %+v %v", dead, err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1", n)
	}
}

// The sink's first send of a message (Outbox-Attempt: 1) is not counted before the handler
// runs; a handler that hangs the request (as a crash would) on every send is still counted
// from the sink's next send on, and dead-lettered in the end.
func TestFirstSendUncountedCrashStillCaught(t *testing.T) {
	e := newEnv(t, inbox.Config{MaxAttempts: 1})
	attempts := func(id string) (n int) {
		if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+pgx.Identifier{e.schema, "inbox_attempts"}.Sanitize()+` WHERE message_id = $1`, id).Scan(&n); err != nil {
			t.Error(err)
		}
		return n
	}
	var calls atomic.Int32
	var countedFirst atomic.Int32
	hang := map[string]bool{}
	var mu sync.Mutex
	h, err := webhookinbox.New(webhookinbox.Config{Inbox: e.in, Secrets: []string{secret}, Logger: logtest.New(t),
		Handler: func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
			if calls.Add(1) == 1 && attempts(m.ID) != 0 {
				countedFirst.Add(1)
			}
			mu.Lock()
			hangs := hang[m.ID]
			mu.Unlock()
			if hangs {
				<-ctx.Done()
				return ctx.Err()
			}
			return e.insert(ctx, tx, m)
		}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	s, err := webhook.New(context.Background(), webhook.Config{URL: srv.URL + "/orders.events", Secrets: []string{secret},
		Source: "webhook-test", Timeout: 300 * time.Millisecond, Logger: logtest.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

	ok := records("k")
	deliver(t, s, ok)
	if n := countedFirst.Load(); n != 0 {
		t.Fatalf("the first send was counted before the handler ran")
	}
	if got := e.applied(t); len(got) != 1 || got[0] != ok[0].ID.String() {
		t.Fatalf("applied %v", got)
	}

	calls.Store(0)
	crash := records("k")
	mu.Lock()
	hang[crash[0].ID.String()] = true
	mu.Unlock()
	for send := 1; ; send++ {
		errs := s.Publish(context.Background(), crash)
		if errs[0] == nil {
			break
		}
		if send == 5 {
			t.Fatalf("not dead-lettered after %d sends: %v", send, errs[0])
		}
	}
	dead, err := e.in.DeadLetters(context.Background(), 0, 10)
	if err != nil || len(dead) != 1 || dead[0].Message.ID != crash[0].ID.String() {
		t.Fatalf("dead letters %+v %v", dead, err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("handler called %d times, want 2 (the first send, uncounted; the second, counted)", n)
	}
}

// TestEndpointRestart: the server goes away and comes back on the same address: the
// messages posted meanwhile are retried by the sender and applied once.
func TestEndpointRestart(t *testing.T) {
	e := newEnv(t, inbox.Config{})
	h, err := webhookinbox.New(webhookinbox.Config{Inbox: e.in, Handler: e.insert, Secrets: []string{secret}, Logger: logtest.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	addr := srv.Listener.Addr().String()
	sk := newSink(t, srv.URL, []string{secret})
	before := records("k", "k", "")
	deliver(t, sk, before)
	srv.Close()
	after := records("k", "k", "")
	if errs := sk.Publish(context.Background(), after); !slices.ContainsFunc(errs, func(err error) bool { return err != nil }) {
		t.Fatal("publishing to a closed server succeeded")
	}
	srv2 := httptest.NewUnstartedServer(h)
	ln, err := listen(addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	srv2.Listener = ln
	srv2.Start()
	t.Cleanup(srv2.Close)
	deliver(t, sk, append(slices.Clone(before), after...))
	all := append(slices.Clone(before), after...)
	got := e.applied(t)
	if !sameSet(got, ids(all)) {
		t.Errorf("effects %v, want %v", got, ids(all))
	}
	var k []string // key k in publication order
	for _, r := range all {
		if r.Key == "k" {
			k = append(k, r.ID.String())
		}
	}
	if got := slices.DeleteFunc(got, func(id string) bool { return !slices.Contains(k, id) }); !slices.Equal(got, k) {
		t.Errorf("key k applied as %v, want %v", got, k)
	}
}

// TestSignatures: rotation both ways is accepted; a wrong secret, a stale or future
// timestamp, a tampered body, missing headers and a ce-id that is not the signed id are not.
func TestSignatures(t *testing.T) {
	e := newEnv(t, inbox.Config{})
	const other = "whsec_c2Vjb25kLXNlY3JldC1rZXktMTIzNDU2Nzg="
	// Receiver with the old and new secret; sender with the new only.
	sk, srv := serve(t, webhookinbox.Config{Inbox: e.in, Handler: e.insert, Secrets: []string{other, secret}}, secret)
	deliver(t, sk, records("a"))
	// Sender with two (rotation), receiver with the second one only.
	sk2, _ := serve(t, webhookinbox.Config{Inbox: e.in, Handler: e.insert, Secrets: []string{secret}}, other, secret)
	deliver(t, sk2, records("b"))
	// A raw secret (no whsec_), as the sink reads it.
	sk3, _ := serve(t, webhookinbox.Config{Inbox: e.in, Handler: e.insert, Secrets: []string{"raw-secret"}}, "raw-secret")
	deliver(t, sk3, records("c"))

	id := outbox.NewID().String()
	body := []byte(`{"x":1}`)
	for _, tc := range []struct {
		name string
		req  func() *http.Request
		want int
	}{
		{"wrong secret", func() *http.Request { return signed(t, srv.URL+"/t", id, time.Now(), body, "whsec_d3Jvbmc=") }, 401},
		{"stale timestamp", func() *http.Request { return signed(t, srv.URL+"/t", id, time.Now().Add(-6*time.Minute), body, secret) }, 401},
		{"future timestamp", func() *http.Request { return signed(t, srv.URL+"/t", id, time.Now().Add(6*time.Minute), body, secret) }, 401},
		{"tampered body", func() *http.Request {
			r := signed(t, srv.URL+"/t", id, time.Now(), body, secret)
			r.Body = http.NoBody
			r.ContentLength = 0
			return r
		}, 401},
		{"no signature", func() *http.Request {
			r := signed(t, srv.URL+"/t", id, time.Now(), body, secret)
			r.Header.Del("Webhook-Signature")
			return r
		}, 401},
		{"ce-id not the signed id: rejected to the dead letters", func() *http.Request {
			r := signed(t, srv.URL+"/t", id, time.Now(), body, secret)
			r.Header.Set("Ce-Id", outbox.NewID().String())
			return r
		}, 204},
		{"GET", func() *http.Request {
			r, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/t", nil)
			return r
		}, 405},
		{"too large", func() *http.Request {
			return signed(t, srv.URL+"/t", id, time.Now(), bytes.Repeat([]byte("x"), 1<<20+1), secret)
		}, 413},
	} {
		resp, err := http.DefaultClient.Do(tc.req())
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	if n := len(e.applied(t)); n != 3 {
		t.Errorf("%d effects, want the 3 signed by the sink", n)
	}
	dead, _ := e.in.DeadLetters(context.Background(), 0, 10)
	if len(dead) != 1 || dead[0].Message.ID != "webhook:"+id {
		t.Errorf("dead letters %+v, want the mismatched ce-id under webhook:<webhook-id>", dead)
	}
}

func TestRetryAfter(t *testing.T) {
	e := newEnv(t, inbox.Config{Backoff: func(int) time.Duration { return 2500 * time.Millisecond }})
	_, srv := serve(t, webhookinbox.Config{Inbox: e.in, Handler: func(context.Context, outbox.Tx, inbox.Message) error {
		return errors.New("down")
	}})
	id := outbox.NewID().String()
	resp, err := http.DefaultClient.Do(signed(t, srv.URL+"/t", id, time.Now(), []byte(`{}`), secret))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "3" {
		t.Errorf("%d Retry-After %q, want 503 with 3", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestConfigValidate(t *testing.T) {
	h := func(context.Context, outbox.Tx, inbox.Message) error { return nil }
	ok := webhookinbox.Config{Inbox: &inbox.Inbox{}, Handler: h, Secrets: []string{secret}}
	for _, tc := range []struct {
		field string
		edit  func(*webhookinbox.Config)
	}{
		{"inbox", func(c *webhookinbox.Config) { c.Inbox = nil }},
		{"handler", func(c *webhookinbox.Config) { c.Handler = nil }},
		{"secrets", func(c *webhookinbox.Config) { c.Secrets = nil }},
		{"secrets", func(c *webhookinbox.Config) { c.Secrets = []string{"whsec_!!!not-base64"} }},
		{"tolerance", func(c *webhookinbox.Config) { c.Tolerance = -1 }},
		{"max_body_bytes", func(c *webhookinbox.Config) { c.MaxBodyBytes = -1 }},
	} {
		c := ok
		tc.edit(&c)
		err := c.Validate()
		var cerr *outbox.ConfigError
		if !errors.As(err, &cerr) || cerr.Field != tc.field {
			t.Errorf("%s: Validate = %v", tc.field, err)
		}
		if err != nil && strings.Contains(err.Error(), "not-base64") {
			t.Errorf("the error quotes the secret: %v", err)
		}
		if _, err := webhookinbox.New(c); err == nil {
			t.Errorf("%s: New accepted it", tc.field)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Error(err)
	}
}

// signed builds a request the way the webhook sink does, with webhook.Sign.
func signed(tb testing.TB, url, id string, ts time.Time, body []byte, key string) *http.Request {
	tb.Helper()
	r, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	sig, err := webhook.Sign(key, id, ts, body)
	if err != nil {
		tb.Fatal(err)
	}
	r.Header.Set("Webhook-Id", id)
	r.Header.Set("Webhook-Timestamp", strconv.FormatInt(ts.Unix(), 10))
	r.Header.Set("Webhook-Signature", sig)
	r.Header.Set("Ce-Id", id)
	r.Header.Set("Ce-Source", "test")
	r.Header.Set("Ce-Specversion", "1.0")
	r.Header.Set("Ce-Type", "t")
	return r
}

func waitFor(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func listen(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(context.Background(), "tcp", addr)
}

// sameSet says whether got holds each of want exactly once, in any order.
func sameSet(got, want []string) bool {
	a, b := slices.Clone(got), slices.Clone(want)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
