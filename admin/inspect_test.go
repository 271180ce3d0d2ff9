package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/admin"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/metrics"
)

func decode[T any](t *testing.T, code int, body string, want int) T {
	t.Helper()
	if code != want {
		t.Fatalf("status %d, want %d: %s", code, want, body)
	}
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return v
}

// GET /api/v1/topics: the topics, most pending first, with a limit that truncates.
func TestTopics(t *testing.T) {
	t.Parallel()
	s, table := newStore(t)
	ctx := context.Background()
	deadLetter(t, s, []outbox.Message{{Topic: "mail", Key: "m"}}, []string{"rejected"})
	if err := s.Enqueue(ctx, outbox.Message{Topic: "orders", Key: "a"}, outbox.Message{Topic: "orders", Key: "b"},
		outbox.Message{Topic: "billing", Key: "c"}); err != nil {
		t.Fatal(err)
	}
	c := serve(t, admin.Config{Store: s, Table: table})
	code, body := c.do("GET", "/api/v1/topics", "", "")
	got := decode[admin.Topics](t, code, body, 200)
	if got.Truncated || len(got.Topics) != 3 {
		t.Fatalf("topics = %+v", got)
	}
	if o := got.Topics[0]; o.Topic != "orders" || o.Pending != 2 || o.Ready != 2 || o.DeadLetters != 0 || o.OldestSeconds <= 0 || o.Paused {
		t.Fatalf("first topic = %+v, want orders with 2 pending", o)
	}
	if m := got.Topics[2]; m.Topic != "mail" || m.Pending != 0 || m.DeadLetters != 1 {
		t.Fatalf("last topic = %+v, want mail with its dead letter", m)
	}
	for _, field := range []string{`"oldest_unpublished_seconds"`, `"last_error"`, `"paused": false`, `"truncated": false`} {
		if !strings.Contains(body, field) {
			t.Errorf("topics lack %s: %s", field, body)
		}
	}
	code, body = c.do("GET", "/api/v1/topics?limit=1", "", "")
	if page := decode[admin.Topics](t, code, body, 200); !page.Truncated || len(page.Topics) != 1 || page.Topics[0].Topic != "orders" {
		t.Fatalf("limit=1: %+v", page)
	}
	for _, bad := range []string{"0", "1001", "x"} {
		if code, _ := c.do("GET", "/api/v1/topics?limit="+bad, "", ""); code != 400 {
			t.Errorf("limit=%s: %d, want 400", bad, code)
		}
	}
}

// GET /api/v1/relays: the live relays with their partitions, this one marked, silent ones
// left out, and the source's report.
func TestRelays(t *testing.T) {
	t.Parallel()
	s, table := newStore(t)
	ctx := context.Background()
	for _, r := range []struct{ id, group string }{{"relay-b", ""}, {"relay-a", ""}, {"relay-sms", "sms"}, {"relay-old", ""}} {
		if _, err := s.Heartbeat(ctx, r.id, r.group, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Pool().Exec(ctx, `UPDATE `+table+`_relays SET heartbeat_at = now() - interval '1 minute' WHERE relay_id = 'relay-old'`); err != nil {
		t.Fatal(err)
	}
	c := serve(t, admin.Config{Store: s, Table: table, RelayID: "relay-b", SourceKind: "poll", RelayTTL: 15 * time.Second,
		Source: func() metrics.SourceStats {
			return metrics.SourceStats{Connected: true, OwnedPartitions: 2, Partitions: 4, Claims: 7}
		}})
	code, body := c.do("GET", "/api/v1/relays", "", "")
	got := decode[admin.Relays](t, code, body, 200)
	want := []admin.Relay{
		{ID: "relay-a", Group: "", Partition: 0, Partitions: 2},
		{ID: "relay-b", Group: "", Partition: 1, Partitions: 2, Self: true},
		{ID: "relay-sms", Group: "sms", Partition: 0, Partitions: 1},
	}
	if len(got.Relays) != len(want) {
		t.Fatalf("relays = %+v, want %+v", got.Relays, want)
	}
	for i, r := range got.Relays {
		age := r.HeartbeatAge
		r.HeartbeatAge = 0
		if r != want[i] || age < 0 || age > 10 {
			t.Fatalf("relay %d = %+v (age %v), want %+v", i, r, age, want[i])
		}
	}
	if got.TTLSeconds != 15 || got.Source == nil || got.Source.Kind != "poll" || !got.Source.Connected || got.Source.OwnedPartitions != 2 || got.Source.Claims != 7 {
		t.Fatalf("relays answer = %+v (source %+v)", got, got.Source)
	}
	if !strings.Contains(body, `"kind": "poll"`) || !strings.Contains(body, `"owned_partitions": 2`) {
		t.Fatalf("the source is not flat in the answer: %s", body)
	}
	// Without a source the answer has none.
	code, body = serve(t, admin.Config{Store: s, Table: table}).do("GET", "/api/v1/relays", "", "")
	if got := decode[admin.Relays](t, code, body, 200); got.Source != nil || got.TTLSeconds != 10 || len(got.Relays) != 3 || got.Relays[1].Self {
		t.Fatalf("relays without a source = %+v", got)
	}
}

// retained publishes msgs in retention mode.
func retained(t *testing.T, s dialect.Store, msgs ...outbox.Message) {
	t.Helper()
	ctx := context.Background()
	if err := s.Enqueue(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	c, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 100, Retain: true})
	if err != nil {
		t.Fatal(err)
	}
	var o outbox.Outcome
	for _, r := range c.Records() {
		o.Published = append(o.Published, r.Seq)
	}
	if err := c.Finish(ctx, o); err != nil {
		t.Fatal(err)
	}
}

// POST /api/v1/replay: a dry run counts, a replay moves the window's messages back to the
// queue; 409 without retention, 401/403 without the admin token, 400 for a bad body, one audit
// line per replay.
func TestReplay(t *testing.T) {
	t.Parallel()
	s, table := newStore(t)
	ctx := context.Background()
	retained(t, s, outbox.Message{Topic: "old", Key: "k"})
	time.Sleep(5 * time.Millisecond)
	from := time.Now()
	retained(t, s, outbox.Message{Topic: "orders", Key: "a"}, outbox.Message{Topic: "orders", Key: "b"}, outbox.Message{Topic: "mail", Key: "a"})
	to := time.Now().Add(time.Hour)
	var logs logtest.Buffer
	c := serve(t, admin.Config{Store: s, Table: table, Token: adminToken, ReadToken: readToken, Retention: time.Hour, Logger: logs.Logger()})
	body := func(extra string) string {
		return `{"from":"` + from.UTC().Format(time.RFC3339Nano) + `","to":"` + to.UTC().Format(time.RFC3339Nano) + `"` + extra + `}`
	}
	for _, tc := range []struct {
		token string
		want  int
	}{{"", 401}, {readToken, 403}, {"wrong-token-0123456789", 401}} {
		if code, out := c.do("POST", "/api/v1/replay", tc.token, body(`,"dry_run":true`)); code != tc.want {
			t.Errorf("replay with token %q: %d, want %d (%s)", tc.token, code, tc.want, out)
		}
	}
	code, out := c.do("POST", "/api/v1/replay", adminToken, body(`,"dry_run":true`))
	if dry := decode[admin.ReplayResult](t, code, out, 200); !dry.DryRun || dry.Matched == nil || *dry.Matched != 3 || dry.Replayed != nil {
		t.Fatalf("dry run = %s", out)
	}
	if st, _ := s.Stats(ctx); st.Pending != 0 {
		t.Fatalf("a dry run changed the outbox: %d pending", st.Pending)
	}
	code, out = c.do("POST", "/api/v1/replay", adminToken, body(`,"topics":["orders"],"keys":["a","z"]`))
	if res := decode[admin.ReplayResult](t, code, out, 200); res.DryRun || res.Replayed == nil || *res.Replayed != 1 {
		t.Fatalf("replay = %s", out)
	}
	code, out = c.do("POST", "/api/v1/replay", adminToken, body(""))
	if res := decode[admin.ReplayResult](t, code, out, 200); *res.Replayed != 2 {
		t.Fatalf("replay of the rest = %s", out)
	}
	cl, err := s.Claim(ctx, dialect.ClaimRequest{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range cl.Records() {
		got = append(got, r.Topic+"/"+r.Key)
	}
	if err := cl.Finish(ctx, outbox.Outcome{}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, " ") != "orders/a orders/b mail/a" {
		t.Fatalf("pending after the replays: %v, want orders/a, then orders/b and mail/a", got)
	}
	if n := strings.Count(logs.String(), `action=replay`); n != 3 {
		t.Fatalf("%d audit lines for 3 replays:\n%s", n, logs.String())
	}
	for _, bad := range []string{`{}`, `nonsense`, body(`,"topic":"x"`),
		`{"from":"2026-01-02T00:00:00Z","to":"2026-01-01T00:00:00Z"}`, body(`,"keys":[""]`)} {
		if code, out := c.do("POST", "/api/v1/replay", adminToken, bad); code != 400 {
			t.Errorf("replay %s: %d, want 400 (%s)", bad, code, out)
		}
	}
	// Without retention, nothing is kept to replay.
	code, out = serve(t, admin.Config{Store: s, Table: table, Token: adminToken}).do("POST", "/api/v1/replay", adminToken, body(""))
	if e := decode[map[string]string](t, code, out, 409); !strings.Contains(e["error"], "keeps no published messages") {
		t.Fatalf("replay without retention: %s", out)
	}
}

type fakeInbox struct {
	consumer string
	st       admin.InboxStats
	err      error
}

func (f fakeInbox) Consumer() string { return f.consumer }
func (f fakeInbox) Table() string    { return "inbox" }
func (f fakeInbox) InboxStats(context.Context) (admin.InboxStats, error) {
	return f.st, f.err
}

// GET /api/v1/inboxes: each configured inbox's figures, an error in place of one that fails.
func TestInboxes(t *testing.T) {
	t.Parallel()
	s, table := newStore(t)
	at := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	c := serve(t, admin.Config{Store: s, Table: table, Inboxes: []admin.Inbox{
		fakeInbox{consumer: "billing", st: admin.InboxStats{Processed: 123, LastProcessedAt: at, DeadLetters: 2}},
		fakeInbox{consumer: "shipping", err: errors.New("relation does not exist")},
	}})
	code, body := c.do("GET", "/api/v1/inboxes", "", "")
	got := decode[struct{ Inboxes []admin.InboxStatus }](t, code, body, 200)
	if len(got.Inboxes) != 2 {
		t.Fatalf("inboxes = %s", body)
	}
	if b := got.Inboxes[0]; b.Consumer != "billing" || b.Table != "inbox" || b.Processed != 123 || b.DeadLetters != 2 ||
		b.LastProcessedAt == nil || !b.LastProcessedAt.Equal(at) || b.Error != "" {
		t.Fatalf("billing = %+v", b)
	}
	if sh := got.Inboxes[1]; sh.Error != "relation does not exist" || sh.LastProcessedAt != nil {
		t.Fatalf("shipping = %+v", sh)
	}
	if !strings.Contains(body, `"last_processed_at": "2026-12-07T20:00:00Z"`) {
		t.Fatalf("last_processed_at not RFC 3339 UTC: %s", body)
	}
}

// Endpoints whose data the server was not given answer 404.
func TestNotConfigured(t *testing.T) {
	t.Parallel()
	s, table := newStore(t)
	c := serve(t, admin.Config{Store: plainAdmin{s}, Table: table, Token: adminToken, Retention: time.Hour})
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/api/v1/topics", ""},
		{"GET", "/api/v1/relays", ""},
		{"GET", "/api/v1/inboxes", ""},
		{"POST", "/api/v1/replay", `{"from":"2026-01-01T00:00:00Z","to":"2026-01-02T00:00:00Z"}`},
		{"GET", "/api/v1/pauses", ""},
		{"POST", "/api/v1/pauses", `{"kind":"topic","name":"t"}`},
		{"DELETE", "/api/v1/pauses/topic/t", ""},
	} {
		code, body := c.do(tc.method, tc.path, adminToken, tc.body)
		if e := decode[map[string]string](t, code, body, 404); e["error"] == "" {
			t.Errorf("%s %s: %s", tc.method, tc.path, body)
		}
	}
}

// plainAdmin hides every optional interface of its store.
type plainAdmin struct{ dialect.Admin }
