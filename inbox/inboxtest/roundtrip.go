package inboxtest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/sink"
)

// RoundTripHarness is a sink and the adapter that consumes what it publishes, on one broker.
type RoundTripHarness struct {
	// Sink publishes to the broker.
	Sink sink.Sink
	// Topic is an outbox topic the sink publishes to and the adapter consumes, private to
	// the test.
	Topic string
	// Source is the CloudEvents source the sink stamps.
	Source string
	// Run consumes with the adapter into in, calling handler, until ctx ends.
	Run func(ctx context.Context, in *inbox.Inbox, handler inbox.Handler) error
}

// RoundTripRecords returns the records RoundTrip publishes: keyed and unkeyed, with and
// without a type, headers (content-type among them), binary, empty and Unicode payloads,
// each with a Seq and a creation time with nanoseconds.
func RoundTripRecords(topic string) []*outbox.Record {
	base := time.Now().UTC().Truncate(time.Second).Add(123456789 * time.Nanosecond)
	seq := time.Now().UnixNano() / 1000 // increasing from run to run
	mk := func(key, typ string, headers map[string]string, payload []byte) *outbox.Record {
		seq++
		return &outbox.Record{
			Message: outbox.Message{ID: outbox.NewID(), Topic: topic, Key: key, Type: typ, Headers: headers, Payload: payload},
			Seq:     seq, CreatedAt: base.Add(time.Duration(seq%1000) * time.Microsecond),
		}
	}
	return []*outbox.Record{
		mk("acct-1", "order.created", nil, []byte(`{"n":1}`)),
		mk("acct-1", "", map[string]string{"trace": "abc", "content-type": "application/json"}, []byte(`{"n":2}`)),
		mk("", "order.noted", nil, []byte("plain")),
		mk("acct-2", "order.created", map[string]string{"xtenant": "ü-tenant"}, []byte{0, 1, 2, 0xff, 0}),
		mk("ключ-3", "order.created", nil, []byte{}),
		mk("acct-1", "order.paid", map[string]string{"content-type": "text/plain; charset=utf-8"}, []byte("paid ✓")),
	}
}

// RoundTrip proves that the adapter returns exactly what was enqueued: it publishes
// RoundTripRecords through the sink, consumes them with the adapter into an inbox on
// PostgreSQL, and compares each Message with its record (id, topic, type, source, key, time,
// headers, payload, position). It then publishes them again, and a last record after them:
// the copies are Duplicates (no handler call, one effect each).
func RoundTrip(t *testing.T, h RoundTripHarness) {
	t.Helper()
	pool, schema := pgtest.Schema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	in, err := inbox.New(ctx, inbox.Config{Pool: pool, Table: schema + ".inbox", Consumer: "roundtrip"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	effects := pgx.Identifier{schema, "effects"}.Sanitize()
	if _, err := pool.Exec(ctx, `CREATE TABLE `+effects+` (message_id text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	var (
		mu   sync.Mutex
		got  = map[string][]inbox.Message{}
		seen = make(chan string, 64)
	)
	handler := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		if _, err := tx.(pgx.Tx).Exec(ctx, `INSERT INTO `+effects+` (message_id) VALUES ($1)`, m.ID); err != nil {
			return err
		}
		mu.Lock()
		got[m.ID] = append(got[m.ID], m)
		mu.Unlock()
		select {
		case seen <- m.ID:
		default:
		}
		return nil
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.Run(runCtx, in, handler) }()
	defer func() {
		stop()
		if err := <-done; err != nil && runCtx.Err() == nil {
			t.Errorf("adapter Run: %v", err)
		}
	}()

	recs := RoundTripRecords(h.Topic)
	publish := func(recs []*outbox.Record) {
		t.Helper()
		for i, err := range h.Sink.Publish(ctx, recs) {
			if err != nil && !sink.IsDuplicate(err) { // a duplicate the broker dropped is a success
				t.Fatalf("publish %d: %v", i, err)
			}
		}
	}
	wait := func(ids ...string) {
		t.Helper()
		for {
			mu.Lock()
			missing := 0
			for _, id := range ids {
				if len(got[id]) == 0 {
					missing++
				}
			}
			mu.Unlock()
			if missing == 0 {
				return
			}
			select {
			case <-seen:
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				t.Fatalf("%d of %d messages not consumed: %v", missing, len(ids), ctx.Err())
			}
		}
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID.String()
	}
	publish(recs)
	wait(ids...)
	mu.Lock()
	for _, r := range recs {
		m := got[r.ID.String()][0]
		if diff := compare(r, h.Source, m); diff != "" {
			t.Errorf("record %s (key %q) came back different: %s", r.ID, r.Key, diff)
		}
	}
	mu.Unlock()

	// Copies are duplicates; a last record shows the adapter got past them.
	publish(recs)
	last := RoundTripRecords(h.Topic)[0]
	publish([]*outbox.Record{last})
	wait(last.ID.String())
	time.Sleep(200 * time.Millisecond) // an unordered broker: let stragglers in
	mu.Lock()
	for _, r := range recs {
		if n := len(got[r.ID.String()]); n != 1 {
			t.Errorf("record %s handled %d times, want once", r.ID, n)
		}
	}
	mu.Unlock()
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+effects).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(recs)+1 {
		t.Errorf("%d effects, want %d", n, len(recs)+1)
	}
}

// compare returns how m differs from the record r published with source, "" when it does not.
func compare(r *outbox.Record, source string, m inbox.Message) string {
	var d []string
	check := func(what string, ok bool, got, want any) {
		if !ok {
			d = append(d, fmt.Sprintf("%s = %q, want %q", what, got, want))
		}
	}
	check("id", m.ID == r.ID.String(), m.ID, r.ID.String())
	check("topic", m.Topic == r.Topic, m.Topic, r.Topic)
	check("type", m.Type == r.EventType(), m.Type, r.EventType())
	check("source", m.Source == source, m.Source, source)
	check("key", m.Key == r.Key, m.Key, r.Key)
	check("time", m.Time.Equal(r.CreatedAt), m.Time.Format(time.RFC3339Nano), r.CreatedAt.Format(time.RFC3339Nano))
	check("payload", bytes.Equal(m.Payload, r.Payload), m.Payload, r.Payload)
	if m.Position != r.Seq {
		d = append(d, fmt.Sprintf("position = %d, want %d", m.Position, r.Seq))
	}
	if !sameHeaders(m.Headers, r.Headers) {
		d = append(d, fmt.Sprintf("headers = %q, want %q", m.Headers, r.Headers))
	}
	return strings.Join(d, "; ")
}

// sameHeaders compares header sets, names ignoring ASCII case (bindings may change it).
func sameHeaders(got, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		found := false
		for gk, gv := range got {
			if strings.EqualFold(gk, k) && gv == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}
