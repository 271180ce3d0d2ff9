package admin_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/admin"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/metrics"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/relaytest"
)

// The pauses: added with the admin token only (401 without, 403 with the read token), 409
// for a second pause of the same name, 400 for a bad body, listed, marked in the topics,
// honoured by a relay reading them from the store without failing /readyz, and removed (404
// when not paused); each mutation has its audit line, no token reaches the log.
func TestPauses(t *testing.T) {
	t.Parallel()
	s, table := newStore(t)
	ctx := context.Background()
	var logs logtest.Buffer
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	rn := relaytest.Start(t, relay.Config{Source: src, Sink: sk, Pauses: s, PauseInterval: 20 * time.Millisecond})
	c := serve(t, admin.Config{Store: s, Table: table, Token: adminToken, ReadToken: readToken, Logger: logs.Logger(), Relay: rn.Relay,
		Source: func() metrics.SourceStats { return metrics.SourceStats{Connected: true} }})

	code, body := c.do("GET", "/api/v1/pauses", readToken, "")
	if got := decode[admin.Pauses](t, code, body, 200); len(got.Pauses) != 0 || !strings.Contains(body, `"pauses": []`) {
		t.Fatalf("pauses of a new table: %s", body)
	}
	pause := `{"kind":"topic","name":"orders","reason":"bad payloads"}`
	for _, tc := range []struct {
		token, body string
		want        int
	}{
		{"", pause, 401},
		{readToken, pause, 403},
		{adminToken, `{"kind":"queue","name":"orders"}`, 400},
		{adminToken, `{"kind":"topic","name":""}`, 400},
		{adminToken, `{"kind":"topic","name":"orders","until":"never"}`, 400},
		{adminToken, `not json`, 400},
	} {
		if code, body := c.do("POST", "/api/v1/pauses", tc.token, tc.body); code != tc.want {
			t.Errorf("POST %s with token %q: %d, want %d (%s)", tc.body, tc.token, code, tc.want, body)
		}
	}
	code, body = c.do("POST", "/api/v1/pauses", adminToken, pause)
	if p := decode[admin.Pause](t, code, body, 201); p.Kind != "topic" || p.Name != "orders" || p.Reason != "bad payloads" ||
		time.Since(p.Since) > time.Minute || !strings.HasPrefix(p.PausedBy, "admin API from ") {
		t.Fatalf("POST answer %s", body)
	}
	if code, body := c.do("POST", "/api/v1/pauses", adminToken, pause); code != 409 || !strings.Contains(body, "already paused") {
		t.Errorf("second pause: %d %s, want 409", code, body)
	}
	code, body = c.do("POST", "/api/v1/pauses", adminToken, `{"kind":"sink","name":"mqtt/a b"}`)
	decode[admin.Pause](t, code, body, 201)
	code, body = c.do("GET", "/api/v1/pauses", readToken, "")
	if got := decode[admin.Pauses](t, code, body, 200); len(got.Pauses) != 2 || got.Pauses[0].Name != "mqtt/a b" || got.Pauses[1].Name != "orders" {
		t.Fatalf("pauses = %s, want the sink then the topic", body)
	}

	// The relay honours the pause; the topics mark it; /readyz is not failed by it.
	if err := s.Enqueue(ctx, outbox.Message{Topic: "orders", Key: "a"}, outbox.Message{Topic: "billing", Key: "b"}); err != nil {
		t.Fatal(err)
	}
	code, body = c.do("GET", "/api/v1/topics", readToken, "")
	for _, tp := range decode[admin.Topics](t, code, body, 200).Topics {
		if tp.Paused != (tp.Topic == "orders") {
			t.Errorf("topic %s: paused %v", tp.Topic, tp.Paused)
		}
	}
	relaytest.WaitFor(t, 5*time.Second, "the relay to read the pauses", func() bool { return len(rn.Relay.OperatorPauses()) == 2 })
	src.Enqueue(outbox.Message{Topic: "orders", Key: "a", Payload: []byte("a:0")}, outbox.Message{Topic: "billing", Key: "b", Payload: []byte("b:0")})
	relaytest.WaitFor(t, 5*time.Second, "the unpaused topic", func() bool { return sk.Unique() == 1 })
	if code, body := c.do("GET", "/readyz", "", ""); code != 200 {
		t.Fatalf("readyz during an operator pause: %d %s", code, body)
	}
	code, body = c.do("GET", "/api/v1/status", readToken, "")
	if st := decode[admin.Status](t, code, body, 200); len(st.OperatorPauses) != 2 || len(st.PausedSinks) != 0 {
		t.Fatalf("status: operator pauses %+v, paused sinks %+v", st.OperatorPauses, st.PausedSinks)
	}
	if sk.Unique() != 1 {
		t.Fatalf("%d delivered while orders is paused, want 1", sk.Unique())
	}

	for _, tc := range []struct {
		path, token string
		want        int
	}{
		{"/api/v1/pauses/topic/orders", "", 401},
		{"/api/v1/pauses/topic/orders", readToken, 403},
		{"/api/v1/pauses/queue/orders", adminToken, 400},
		{"/api/v1/pauses/topic/billing", adminToken, 404},
		{"/api/v1/pauses/topic/orders", adminToken, 200},
		{"/api/v1/pauses/topic/orders", adminToken, 404},
		{"/api/v1/pauses/sink/" + url.PathEscape("mqtt/a b"), adminToken, 200},
	} {
		if code, body := c.do("DELETE", tc.path, tc.token, ""); code != tc.want {
			t.Errorf("DELETE %s with token %q: %d, want %d (%s)", tc.path, tc.token, code, tc.want, body)
		}
	}
	relaytest.WaitFor(t, 5*time.Second, "the resumed topic", func() bool { return sk.Unique() == 2 })
	log := logs.String()
	for _, want := range []string{"action=pause", "action=resume", "name=orders", "already paused"} {
		if !strings.Contains(log, want) {
			t.Errorf("the audit log lacks %s:\n%s", want, log)
		}
	}
	for _, tok := range []string{adminToken, readToken} {
		if strings.Contains(log, tok) {
			t.Fatalf("a token reached the log:\n%s", log)
		}
	}
}

// On a schema older than the pauses table, the pauses answer 409 saying to migrate, and the
// topics are listed (none paused).
func TestPausesNeedMigration(t *testing.T) {
	t.Parallel()
	s, table := newStore(t)
	if _, err := s.MigrateDown(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	c := serve(t, admin.Config{Store: s, Table: table, Token: adminToken})
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/api/v1/pauses", ""},
		{"POST", "/api/v1/pauses", `{"kind":"topic","name":"t"}`},
		{"DELETE", "/api/v1/pauses/topic/t", ""},
	} {
		if code, body := c.do(tc.method, tc.path, adminToken, tc.body); code != 409 || !strings.Contains(body, "migrate up") {
			t.Errorf("%s %s: %d %s, want 409 naming the migration", tc.method, tc.path, code, body)
		}
	}
	if code, body := c.do("GET", "/api/v1/topics", "", ""); code != 200 {
		t.Errorf("topics: %d %s", code, body)
	}
}
