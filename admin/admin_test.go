package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/admin"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/metrics"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/relaytest"
	"github.com/outboxgo/outbox/sink"
)

const (
	adminToken = "admin-token-0123456789"
	readToken  = "read-token-0123456789a"
)

func newStore(t *testing.T) (*postgres.Store, string) {
	t.Helper()
	pool, schema := pgtest.Schema(t)
	table := schema + ".outbox"
	s, err := postgres.New(context.Background(), postgres.Config{Pool: pool, Table: table})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MigrateUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, table
}

// deadLetter enqueues msgs and moves them to the dead letters with errs[i].
func deadLetter(t *testing.T, s *postgres.Store, msgs []outbox.Message, errs []string) {
	t.Helper()
	ctx := context.Background()
	if err := s.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	c, err := s.Claim(ctx, dialect.ClaimRequest{Limit: len(msgs)})
	if err != nil {
		t.Fatal(err)
	}
	var o outbox.Outcome
	for i, r := range c.Records() {
		o.Dead = append(o.Dead, outbox.Dead{Seq: r.Seq, Error: errs[i]})
	}
	if err := c.Finish(ctx, o); err != nil {
		t.Fatal(err)
	}
}

type client struct {
	t   *testing.T
	url string
}

func (c client) do(method, path, token, body string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.url+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func serve(t *testing.T, cfg admin.Config) client {
	t.Helper()
	srv, err := admin.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	return client{t: t, url: hs.URL}
}

// Reading needs the read or the admin token once a read token is set; changing anything
// needs the admin token (403 with the read token, and when no admin token is configured);
// a wrong token is refused everywhere but the probes; no token ever reaches the log.
func TestAuth(t *testing.T) {
	t.Parallel()
	s, table := newStore(t)
	var logs logtest.Buffer
	reg := prometheus.NewRegistry()
	c := serve(t, admin.Config{Store: s, Table: table, Gatherer: reg, Token: adminToken, ReadToken: readToken, Logger: logs.Logger()})
	retry := `{"all":true,"dry_run":true}`
	for _, tc := range []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/healthz", "", "", 200},
		{"GET", "/readyz", "", "", 200},
		{"GET", "/api/v1/status", "", "", 401},
		{"GET", "/api/v1/status", "wrong-token-0123456789", "", 401},
		{"GET", "/api/v1/status", readToken, "", 200},
		{"GET", "/api/v1/status", adminToken, "", 200},
		{"GET", "/metrics", "", "", 401},
		{"GET", "/metrics", readToken, "", 200},
		{"GET", "/api/v1/dead-letters", readToken, "", 200},
		{"POST", "/api/v1/dead-letters/retry", "", retry, 401},
		{"POST", "/api/v1/dead-letters/retry", readToken, retry, 403},
		{"POST", "/api/v1/dead-letters/retry", readToken[:10], retry, 401},
		{"POST", "/api/v1/dead-letters/retry", adminToken, retry, 200},
		{"POST", "/api/v1/dead-letters/purge", adminToken + "x", retry, 401},
		{"GET", "/api/v1/nothing", readToken, "", 404},
	} {
		if got, body := c.do(tc.method, tc.path, tc.token, tc.body); got != tc.want {
			t.Errorf("%s %s with token %q: %d, want %d (%s)", tc.method, tc.path, tc.token, got, tc.want, body)
		}
	}
	if !strings.Contains(logs.String(), "admin: mutation") {
		t.Errorf("no audit line for the mutation:\n%s", logs.String())
	}
	for _, tok := range []string{adminToken, readToken, readToken[:10]} {
		if strings.Contains(logs.String(), tok) {
			t.Fatalf("a token reached the log:\n%s", logs.String())
		}
	}

	// Without an admin token, mutations are off; without a read token, reading is open.
	open := serve(t, admin.Config{Store: s, Table: table})
	if got, _ := open.do("GET", "/api/v1/status", "", ""); got != 200 {
		t.Errorf("open status: %d", got)
	}
	if got, body := open.do("POST", "/api/v1/dead-letters/retry", "", retry); got != 403 || !strings.Contains(body, "disabled") {
		t.Errorf("retry without an admin token configured: %d %s", got, body)
	}
	for _, cfg := range []admin.Config{{Store: s, Token: "short"}, {Store: s, Token: adminToken, ReadToken: adminToken}, {}} {
		if _, err := admin.New(cfg); err == nil {
			t.Errorf("admin.New(%+v) accepted", cfg)
		}
	}
}

// The dead letters: listed with filters and a cursor, grouped by topic and normalised error,
// retried and purged by filter, ids or all, dry runs changing nothing.
func TestDeadLetters(t *testing.T) {
	t.Parallel()
	s, table := newStore(t)
	var msgs []outbox.Message
	var errs []string
	for i := range 30 {
		topic := "orders"
		if i%3 == 0 {
			topic = "mail"
		}
		msgs = append(msgs, outbox.Message{Topic: topic, Key: fmt.Sprint("k", i), Payload: []byte(`<script>alert(1)</script>`)})
		errs = append(errs, fmt.Sprintf("broker refused message %d: offset %d out of range", i, 100+i))
	}
	deadLetter(t, s, msgs, errs)
	c := serve(t, admin.Config{Store: s, Table: table, Token: adminToken})

	var page struct {
		DeadLetters []admin.DeadLetter `json:"dead_letters"`
		Next        string             `json:"next"`
	}
	var seen int
	after := ""
	for {
		code, body := c.do("GET", "/api/v1/dead-letters?topic=orders&limit=7"+after, "", "")
		if code != 200 {
			t.Fatalf("list: %d %s", code, body)
		}
		page.Next = ""
		if err := json.Unmarshal([]byte(body), &page); err != nil {
			t.Fatal(err)
		}
		for _, d := range page.DeadLetters {
			if d.Topic != "orders" || d.Payload != `<script>alert(1)</script>` || !strings.HasPrefix(d.Error, "broker refused") {
				t.Fatalf("unexpected dead letter %+v", d)
			}
		}
		seen += len(page.DeadLetters)
		if page.Next == "" {
			break
		}
		after = "&after=" + page.Next
	}
	if seen != 20 {
		t.Fatalf("listed %d orders dead letters, want 20", seen)
	}
	if code, _ := c.do("GET", "/api/v1/dead-letters?limit=0", "", ""); code != 400 {
		t.Errorf("limit=0: %d, want 400", code)
	}

	code, body := c.do("GET", "/api/v1/dead-letters/groups", "", "")
	var groups struct{ Groups []admin.Group }
	if err := json.Unmarshal([]byte(body), &groups); code != 200 || err != nil {
		t.Fatalf("groups: %d %v %s", code, err, body)
	}
	if len(groups.Groups) != 2 || groups.Groups[0].Topic != "orders" || groups.Groups[0].Count != 20 ||
		groups.Groups[0].Error != "broker refused message <n>: offset <n> out of range" || groups.Groups[1].Count != 10 {
		t.Fatalf("groups = %+v", groups.Groups)
	}

	mutate := func(path, body string) admin.Result {
		t.Helper()
		code, out := c.do("POST", path, adminToken, body)
		if code != 200 {
			t.Fatalf("%s %s: %d %s", path, body, code, out)
		}
		var r admin.Result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := mutate("/api/v1/dead-letters/retry", `{"filter":{"topic":"mail"},"dry_run":true}`); r.Matched != 10 || r.Done != 0 {
		t.Fatalf("dry run = %+v", r)
	}
	if r := mutate("/api/v1/dead-letters/retry", `{"filter":{"topic":"mail"}}`); r.Matched != 10 || r.Done != 10 {
		t.Fatalf("retry = %+v", r)
	}
	st, err := s.Stats(context.Background())
	if err != nil || st.Pending != 10 || st.DeadLetters != 20 {
		t.Fatalf("after retry: %+v %v", st, err)
	}
	if r := mutate("/api/v1/dead-letters/purge", fmt.Sprintf(`{"ids":[%d]}`, groups.Groups[0].IDs[0])); r.Done != 1 {
		t.Fatalf("purge by id = %+v", r)
	}
	if r := mutate("/api/v1/dead-letters/purge", `{"all":true}`); r.Matched != 19 || r.Done != 19 {
		t.Fatalf("purge all = %+v", r)
	}
	for _, bad := range []string{`{}`, `{"all":true,"ids":[1]}`, `{"filter":{}}`, `{"al":true}`, `nonsense`} {
		if code, _ := c.do("POST", "/api/v1/dead-letters/purge", adminToken, bad); code != 400 {
			t.Errorf("purge %s: %d, want 400", bad, code)
		}
	}
}

// /readyz fails, naming the reason, while a sink is paused or the backlog is older than
// MaxLag, and passes once both clear.
func TestReadyz(t *testing.T) {
	t.Parallel()
	s, table := newStore(t)
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	heal := sk.Script(relaytest.Rule{Err: sink.Unavailable(errors.New("connection refused"))})
	r, err := relay.New(relay.Config{Source: src, Sink: sk, SinkName: "nats", MaxProbeInterval: time.Second,
		Logger: logtest.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	if err := s.Enqueue(context.Background(), outbox.Message{Topic: "t", Key: "k"}); err != nil {
		t.Fatal(err)
	}
	c := serve(t, admin.Config{Store: s, Table: table, Relay: r, MaxLag: 300 * time.Millisecond,
		Source: func() metrics.SourceStats { return metrics.SourceStats{Connected: true} }})

	src.Enqueue(outbox.Message{Topic: "t", Key: "k"})
	deadline := time.Now().Add(10 * time.Second)
	for len(r.Paused()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sink never paused")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(400 * time.Millisecond) // the outbox row is older than MaxLag now
	code, body := c.do("GET", "/readyz", "", "")
	if code != 503 || !strings.Contains(body, "sink nats paused") || !strings.Contains(body, "connection refused") ||
		!strings.Contains(body, `"name": "lag"`) || !strings.Contains(body, "above 300ms") {
		t.Fatalf("readyz = %d %s", code, body)
	}
	heal()
	c2, _ := s.Claim(context.Background(), dialect.ClaimRequest{Limit: 10})
	var o outbox.Outcome
	for _, rec := range c2.Records() {
		o.Published = append(o.Published, rec.Seq)
	}
	if err := c2.Finish(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	for {
		code, body = c.do("GET", "/readyz", "", "")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz after healing = %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
