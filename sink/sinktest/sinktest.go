// Package sinktest is the conformance suite every sink.Sink passes. A sink's test supplies a
// setup function that returns a Harness: the sink, the topics it routes to a destination
// private to the test, and a Receiver reading that destination back through the broker's
// CloudEvents binding. Run then checks the guarantees the relay relies on: one result per
// message, delivery of every acknowledged message with its envelope, per-key order, and a
// prompt, retryable failure when the context ends.
//
//	func TestConformance(t *testing.T) {
//		sinktest.Run(t, func(t *testing.T) *sinktest.Harness {
//			// create an isolated stream/topic/queue, a sink and a consumer for it
//		})
//	}
package sinktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
)

// Received is a message as a consumer of the broker saw it, decoded from the broker's
// CloudEvents binary-mode binding (NATS and HTTP ce- headers, Kafka ce_ headers, AMQP
// cloudEvents: properties, MQTT user properties). A harness should decode with a decoder
// that follows the binding's specification and is not the sink's own code (the sinks of
// this module use the CloudEvents Go SDK's bindings in their tests), with attribute values
// already decoded (percent-decoded for HTTP and NATS, see DecodePercent).
type Received struct {
	// Topic is the outbox topic the message was published to (the harness's Receiver maps
	// the broker's destination back, e.g. by removing a subject prefix).
	Topic string
	// CloudEvents context attributes; empty when absent.
	ID              string
	Source          string
	SpecVersion     string
	Type            string
	Subject         string
	Time            string
	DataContentType string
	// OutboxSeq is the outboxseq extension attribute (sink.SeqAttribute), the record's
	// position in its key's order as the decimal Seq; empty when absent.
	OutboxSeq string
	// Headers holds every other header or property, the user's headers among them; names
	// are compared ignoring ASCII case.
	Headers map[string]string
	Payload []byte
}

// Event is what a CloudEvents decoder returns; the CloudEvents Go SDK's *event.Event
// implements it, so a harness can decode with the SDK without this package importing it.
type Event interface {
	ID() string
	Source() string
	SpecVersion() string
	Type() string
	Subject() string
	Time() time.Time
	DataContentType() string
	Data() []byte
	Extensions() map[string]any
	Validate() error
}

// FromEvent returns the Received of a decoded event published to topic, after checking that
// it is a valid CloudEvent. OutboxSeq is the event's outboxseq extension. Headers is empty,
// for the harness to fill.
func FromEvent(topic string, ev Event) (Received, error) {
	if err := ev.Validate(); err != nil {
		return Received{}, fmt.Errorf("sinktest: message on %q is not a valid CloudEvent: %w", topic, err)
	}
	var seq string
	if v, ok := ev.Extensions()[sink.SeqAttribute]; ok {
		seq = fmt.Sprint(v)
	}
	return Received{
		Topic: topic, ID: ev.ID(), Source: ev.Source(), SpecVersion: ev.SpecVersion(),
		Type: ev.Type(), Subject: ev.Subject(), Time: ev.Time().Format(time.RFC3339Nano),
		DataContentType: ev.DataContentType(), OutboxSeq: seq, Payload: ev.Data(), Headers: map[string]string{},
	}, nil
}

// Receiver reads the messages published to a harness's topics, in the order the broker
// delivers them (per topic, the order they were stored in).
type Receiver interface {
	// Receive returns the next message, waiting for it until ctx ends.
	Receive(ctx context.Context) (Received, error)
}

// Harness is an isolated environment for one subtest: nothing but the subtest publishes to
// its topics, and its Receiver sees only what was published to them.
type Harness struct {
	// Sink is the sink under test. Run closes it at the end of the subtest.
	Sink sink.Sink
	// Topics are the topics Sink routes to the isolated destination; at least one.
	Topics []string
	// Receiver reads what Sink published to Topics.
	Receiver Receiver
	// Source is the CloudEvents source Sink is configured with.
	Source string
	// Permanent, when not empty, are records the sink must fail with a permanent error
	// without affecting the other messages of the batch: an oversized payload, a topic the
	// broker cannot route to.
	Permanent []*outbox.Record
	// NoEnvelope is set for sinks whose output has no CloudEvents envelope (stdout): the
	// source and specversion attributes are then not checked; the Receiver still maps id,
	// type, subject (key) and time from the sink's own format.
	NoEnvelope bool
	// Timeout bounds each wait for delivery. Default 30s.
	Timeout time.Duration
}

// Run runs the conformance suite. setup is called once per subtest, and subtests run in
// parallel, so every Harness must be isolated from the others.
func Run(t *testing.T, setup func(t *testing.T) *Harness) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, h *Harness)
	}{
		{"PublishAndReceive", testPublishAndReceive},
		{"EmptyBatch", testEmptyBatch},
		{"Republish", testRepublish},
		{"ContextEnded", testContextEnded},
		{"CancelDuringPublish", testCancelDuringPublish},
		{"ConcurrentPublish", testConcurrentPublish},
		{"PermanentFailures", testPermanentFailures},
		{"Binding", testBinding},
		{"ReservedHeaders", testReservedHeaders},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := setup(t)
			if h == nil || h.Sink == nil || h.Receiver == nil || len(h.Topics) == 0 {
				t.Fatal("sinktest: setup must return a Harness with Sink, Receiver and at least one topic")
			}
			if h.Timeout == 0 {
				h.Timeout = 30 * time.Second
			}
			t.Cleanup(func() {
				if err := h.Sink.Close(); err != nil {
					t.Errorf("closing sink: %v", err)
				}
			})
			tc.fn(t, h)
		})
	}
}

// epoch is a fixed creation time with nanoseconds, to check the time attribute round trip.
var epoch = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)

// NewRecord returns a record with a fresh id and the given topic, key and payload, and
// increasing Seq and CreatedAt, as a relay would read it.
func NewRecord(topic, key string, payload []byte) *outbox.Record {
	seq := lastSeq.Add(1)
	return &outbox.Record{
		Message: outbox.Message{
			ID:      outbox.NewID(),
			Topic:   topic,
			Key:     key,
			Payload: payload,
		},
		Seq:       seq,
		CreatedAt: epoch.Add(time.Duration(seq) * time.Microsecond),
	}
}

var lastSeq atomic.Int64

// batch makes keys×perKey keyed records, interleaved across keys the way a relay batch is,
// plus unkeyed ones. Each key stays on one topic: order is only promised within a topic.
func batch(h *Harness, prefix string, keys, perKey, unkeyed int) []*outbox.Record {
	var recs []*outbox.Record
	for i := 0; i < perKey; i++ {
		for k := 0; k < keys; k++ {
			key := fmt.Sprintf("%s-key-%d", prefix, k)
			r := NewRecord(h.Topics[k%len(h.Topics)], key, fmt.Appendf(nil, `{"key":%q,"n":%d}`, key, i))
			r.Headers = map[string]string{"content-type": "application/json", "n": fmt.Sprint(i)}
			if k%2 == 0 {
				r.Type = "com.example.test.v1"
			}
			recs = append(recs, r)
		}
		if i < unkeyed {
			r := NewRecord(h.Topics[i%len(h.Topics)], "", []byte{0, 1, 2, 0xff, byte(i)})
			r.Headers = map[string]string{"binary": "yes"}
			recs = append(recs, r)
		}
	}
	return recs
}

func publish(t *testing.T, h *Harness, recs []*outbox.Record) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	res := h.Sink.Publish(ctx, recs)
	if len(res) != len(recs) {
		t.Fatalf("Publish returned %d results for %d messages", len(res), len(recs))
	}
	return res
}

func requireAllOK(t *testing.T, recs []*outbox.Record, res []error) {
	t.Helper()
	for i, err := range res {
		if err != nil {
			t.Fatalf("message %d (topic %q, key %q): %v", i, recs[i].Topic, recs[i].Key, err) //nolint:gosec // G602: len(res) == len(recs), checked by publish
		}
	}
}

// collect receives until every record of want has arrived, checks each against the record
// it was published from, and returns the ids in arrival order (first copies only:
// duplicates are allowed by at-least-once delivery). Messages of maybe may arrive too (sent
// but not acknowledged); any other message fails the test.
func collect(t *testing.T, h *Harness, want []*outbox.Record, maybe ...*outbox.Record) []string {
	t.Helper()
	byID := make(map[string]*outbox.Record, len(want))
	for _, r := range want {
		byID[r.ID.String()] = r
	}
	others := make(map[string]bool, len(maybe))
	for _, r := range maybe {
		others[r.ID.String()] = true
	}
	seen := make(map[string]bool, len(want))
	var order []string
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	for len(seen) < len(byID) {
		m, err := h.Receiver.Receive(ctx)
		if err != nil {
			t.Fatalf("received %d of %d messages, then: %v", len(seen), len(byID), err)
		}
		r, ok := byID[m.ID]
		if !ok {
			if !others[m.ID] {
				t.Fatalf("received a message that was not published in this test: id %q topic %q", m.ID, m.Topic)
			}
			continue
		}
		if seen[m.ID] {
			continue
		}
		seen[m.ID] = true
		order = append(order, m.ID)
		checkEnvelope(t, h, r, m)
	}
	return order
}

// checkEnvelope compares what arrived with the record it was published from.
func checkEnvelope(t *testing.T, h *Harness, r *outbox.Record, m Received) {
	t.Helper()
	id := r.ID.String()
	if m.Topic != r.Topic {
		t.Errorf("message %s: topic %q, want %q", id, m.Topic, r.Topic)
	}
	if !h.NoEnvelope {
		if m.SpecVersion != sink.SpecVersion {
			t.Errorf("message %s: specversion %q, want %q", id, m.SpecVersion, sink.SpecVersion)
		}
		if h.Source != "" && m.Source != h.Source {
			t.Errorf("message %s: source %q, want %q", id, m.Source, h.Source)
		}
	}
	if m.Type != r.EventType() {
		t.Errorf("message %s: type %q, want %q", id, m.Type, r.EventType())
	}
	if m.Subject != r.Key {
		t.Errorf("message %s: subject %q, want the key %q", id, m.Subject, r.Key)
	}
	if ts, err := time.Parse(time.RFC3339Nano, m.Time); err != nil || !ts.Equal(r.CreatedAt) {
		t.Errorf("message %s: time %q, want %s (RFC 3339)", id, m.Time, r.CreatedAt.Format(time.RFC3339Nano))
	}
	if !bytes.Equal(m.Payload, r.Payload) {
		t.Errorf("message %s: payload %q, want %q", id, m.Payload, r.Payload)
	}
	// The position: the decimal Seq, and none for a record without one.
	if want := seqText(r.Seq); m.OutboxSeq != want {
		t.Errorf("message %s: outboxseq %q, want %q (Seq %d)", id, m.OutboxSeq, want, r.Seq)
	}
	contentType := ""
	for name, v := range r.Headers {
		if strings.EqualFold(name, "content-type") {
			contentType = v
			continue
		}
		if got, ok := header(m.Headers, name); !ok || got != v {
			t.Errorf("message %s: header %q = %q (present %v), want %q", id, name, got, ok, v)
		}
	}
	// No content-type header, no datacontenttype: a sink must not invent one.
	if m.DataContentType != contentType {
		t.Errorf("message %s: datacontenttype %q, want %q", id, m.DataContentType, contentType)
	}
}

// seqText is the outboxseq a record with Seq seq carries: its decimal, or "" (absent) when
// seq <= 0.
func seqText(seq int64) string {
	if seq <= 0 {
		return ""
	}
	return strconv.FormatInt(seq, 10)
}

// DecodePercent decodes, with the package's DecodePercent, the attributes the HTTP and NATS
// bindings percent-encode: every string attribute (id, time and outboxseq are never
// encoded, so decoding them is harmless).
func (m *Received) DecodePercent() error {
	for _, p := range []*string{&m.ID, &m.Source, &m.SpecVersion, &m.Type, &m.Subject, &m.Time, &m.DataContentType, &m.OutboxSeq} {
		v, err := DecodePercent(*p)
		if err != nil {
			return err
		}
		*p = v
	}
	return nil
}

// header looks name up in h ignoring ASCII case.
func header(h map[string]string, name string) (string, bool) {
	if v, ok := h[name]; ok {
		return v, true
	}
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// DecodePercent decodes a header value of the CloudEvents HTTP or NATS binding (3.1.3.2) the
// way the specification tells a receiver to: a double-quoted string is unquoted first
// (backslash escapes included), then one round of percent-decoding follows, accepting
// lower-case hex, and a result that is not valid UTF-8 is an error. Decoders of the
// CloudEvents Go SDK v2 skip this step; harnesses apply it to what they decode.
func DecodePercent(v string) (string, error) {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		var b strings.Builder
		for i := 1; i < len(v)-1; i++ {
			c := v[i]
			if c == '\\' && i+1 < len(v)-1 {
				i++
				c = v[i]
			}
			b.WriteByte(c)
		}
		v = b.String()
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c != '%' {
			out = append(out, c)
			continue
		}
		if i+2 >= len(v) {
			return "", fmt.Errorf("sinktest: %q: truncated percent-encoding", v)
		}
		hi, ok1 := unhex(v[i+1])
		lo, ok2 := unhex(v[i+2])
		if !ok1 || !ok2 {
			return "", fmt.Errorf("sinktest: %q: invalid percent-encoding", v)
		}
		out = append(out, hi<<4|lo)
		i += 2
	}
	if !utf8.Valid(out) {
		return "", fmt.Errorf("sinktest: %q: percent-decodes to invalid UTF-8", v)
	}
	return string(out), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// checkKeyOrder checks that, for every key, the messages arrived in the order published.
func checkKeyOrder(t *testing.T, published []*outbox.Record, arrived []string) {
	t.Helper()
	pos := make(map[string]int, len(arrived))
	for i, id := range arrived {
		pos[id] = i
	}
	last := map[string]*outbox.Record{}
	for _, r := range published {
		if r.Key == "" {
			continue
		}
		p, ok := pos[r.ID.String()]
		if !ok {
			continue
		}
		if prev := last[r.Key]; prev != nil && pos[prev.ID.String()] > p {
			t.Errorf("key %q: message %s (seq %d) arrived before %s (seq %d)", r.Key, r.ID, r.Seq, prev.ID, prev.Seq)
		}
		last[r.Key] = r
	}
}

func testPublishAndReceive(t *testing.T, h *Harness) {
	recs := batch(h, "par", 4, 12, 5)
	res := publish(t, h, recs)
	requireAllOK(t, recs, res)
	arrived := collect(t, h, recs)
	checkKeyOrder(t, recs, arrived)
}

func testEmptyBatch(t *testing.T, h *Harness) {
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
	defer cancel()
	if res := h.Sink.Publish(ctx, nil); len(res) != 0 {
		t.Errorf("Publish(nil) returned %d results", len(res))
	}
	if res := h.Sink.Publish(ctx, []*outbox.Record{}); len(res) != 0 {
		t.Errorf("Publish(empty) returned %d results", len(res))
	}
}

// testRepublish publishes the same record again, as the relay does after a crash between
// the broker's ack and its own bookkeeping. The second publish must succeed too (a broker
// that dedupes reports a duplicate, sink.Duplicate, which is success).
func testRepublish(t *testing.T, h *Harness) {
	r := NewRecord(h.Topics[0], "re-key", []byte(`{"again":true}`))
	requireAllOK(t, []*outbox.Record{r}, publish(t, h, []*outbox.Record{r}))
	if err := publish(t, h, []*outbox.Record{r})[0]; err != nil && !sink.IsDuplicate(err) {
		t.Fatalf("republish (topic %q, key %q): %v", r.Topic, r.Key, err)
	}
	collect(t, h, []*outbox.Record{r})
}

// testContextEnded: with a context that has already ended, Publish sends nothing and fails
// every message, retryably, with the context's error.
func testContextEnded(t *testing.T, h *Harness) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		ctx  context.Context
		want error
	}{{canceled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		recs := batch(h, "ctx", 2, 3, 1)
		start := time.Now()
		res := h.Sink.Publish(c.ctx, recs)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Publish with an ended context took %s", d)
		}
		if len(res) != len(recs) {
			t.Fatalf("Publish returned %d results for %d messages", len(res), len(recs))
		}
		for i, err := range res {
			switch {
			case err == nil:
				t.Errorf("message %d: acknowledged although the context had ended (%v)", i, c.want)
			case sink.IsPermanent(err):
				t.Errorf("message %d: permanent error for an ended context: %v", i, err)
			case !errors.Is(err, c.want):
				t.Errorf("message %d: error %v does not wrap %v", i, err, c.want)
			}
		}
	}
}

// testCancelDuringPublish cancels a large batch while it is in flight: Publish must return
// promptly, fail unacknowledged messages retryably, and every message it reported as
// acknowledged must arrive.
func testCancelDuringPublish(t *testing.T, h *Harness) {
	payload := bytes.Repeat([]byte("x"), 1024)
	mk := func() []*outbox.Record {
		var recs []*outbox.Record
		for i := 0; i < 2000; i++ {
			recs = append(recs, NewRecord(h.Topics[i%len(h.Topics)], fmt.Sprintf("cdp-%d", i%10), payload))
		}
		return recs
	}
	// Time an uncanceled batch, then cancel the next one halfway through, so that some
	// messages are acknowledged and some are not.
	warm := mk()
	start := time.Now()
	requireAllOK(t, warm, publish(t, h, warm))
	full := time.Since(start)

	recs := mk()
	ctx, cancel := context.WithCancel(context.Background())
	timer := time.AfterFunc(full/2, cancel)
	defer timer.Stop()
	start = time.Now()
	res := h.Sink.Publish(ctx, recs)
	elapsed := time.Since(start)
	cancel()
	if len(res) != len(recs) {
		t.Fatalf("Publish returned %d results for %d messages", len(res), len(recs))
	}
	// Generous for slow CI, far below the sink's own timeout defaults.
	if elapsed > full/2+3*time.Second {
		t.Errorf("Publish took %s to return, canceled after %s", elapsed, full/2)
	}
	var acked []*outbox.Record
	for i, err := range res {
		if err == nil {
			acked = append(acked, recs[i])
		} else if sink.IsPermanent(err) {
			t.Errorf("message %d: permanent error after cancellation: %v", i, err)
		}
	}
	t.Logf("%d of %d messages acknowledged, canceled after %s", len(acked), len(recs), full/2)
	want := append(warm, acked...)
	arrived := collect(t, h, want, recs...)
	checkKeyOrder(t, want, arrived)
}

// testConcurrentPublish publishes from several goroutines at once, as a relay with several
// lanes does.
func testConcurrentPublish(t *testing.T, h *Harness) {
	const workers, batches = 4, 5
	var (
		mu  sync.Mutex
		all []*outbox.Record
		wg  sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < batches; b++ {
				recs := batch(h, fmt.Sprintf("cc%d", w), 3, 5, 0)
				ctx, cancel := context.WithTimeout(context.Background(), h.Timeout)
				res := h.Sink.Publish(ctx, recs)
				cancel()
				if len(res) != len(recs) {
					t.Errorf("Publish returned %d results for %d messages", len(res), len(recs))
					return
				}
				for i, err := range res {
					if err != nil {
						t.Errorf("worker %d message %d: %v", w, i, err)
						return
					}
				}
				mu.Lock()
				all = append(all, recs...)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Published order per key is the order within each worker, which all preserves.
	slices.SortStableFunc(all, func(a, b *outbox.Record) int { return int(a.Seq - b.Seq) })
	arrived := collect(t, h, all)
	checkKeyOrder(t, all, arrived)
}

// testPermanentFailures puts the harness's bad records between good ones: the bad ones fail
// permanently, the good ones are unaffected.
func testPermanentFailures(t *testing.T, h *Harness) {
	if len(h.Permanent) == 0 {
		t.Skip("harness has no records that must fail permanently")
	}
	var recs []*outbox.Record
	var good []*outbox.Record
	for i, bad := range h.Permanent {
		g := NewRecord(h.Topics[0], "perm-key", fmt.Appendf(nil, `{"n":%d}`, i))
		good = append(good, g)
		recs = append(recs, g, bad)
	}
	last := NewRecord(h.Topics[0], "perm-key", []byte(`{"n":"last"}`))
	good = append(good, last)
	recs = append(recs, last)
	res := publish(t, h, recs)
	for i, err := range res {
		if i%2 == 1 && i < len(recs)-1 {
			if !sink.IsPermanent(err) {
				t.Errorf("bad record %d (topic %q, %d bytes): got %v, want a permanent error", i/2, recs[i].Topic, len(recs[i].Payload), err)
			} else {
				t.Logf("bad record %d: %v", i/2, err)
			}
		} else if err != nil {
			t.Errorf("good message %d: %v", i, err)
		}
	}
	arrived := collect(t, h, good)
	checkKeyOrder(t, good, arrived)
}

// testBinding publishes the cases of the wire contract and checks what a consumer decodes
// through the broker's binding: percent signs, spaces, quotes and non-ASCII text in the
// subject (the key), the type and user header values, with and without a content type, with
// and without a key, with and without a position (Seq 0 carries no outboxseq). Each must
// come back exactly as it was published.
func testBinding(t *testing.T, h *Harness) {
	topic := h.Topics[0]
	mk := func(key, typ string, headers map[string]string, payload string) *outbox.Record {
		r := NewRecord(topic, key, []byte(payload))
		r.Type = typ
		r.Headers = headers
		return r
	}
	recs := []*outbox.Record{
		mk("rabatt 50% \u20ac", "com.example.preis ge\u00e4ndert", map[string]string{
			"content-type": "text/plain; charset=utf-8",
			"note":         `100% "echt" \u20ac \U0001F600`,
			"traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		}, "Preis: 50 \u20ac"),
		mk("", "", nil, "\x00\x01 no key, no content type, no headers"),
		mk("k%2F1 %41", "t%20ype", map[string]string{"note": "%41%", "content-type": "application/json"}, `{"a":1}`),
		mk("\u00fcber/\u00e4rger", "", map[string]string{"note": "plain"}, "no content type"),
		mk("no-position", "", map[string]string{"note": "seq 0"}, "no position"),
	}
	recs[len(recs)-1].Seq = 0 // a record without a position carries no outboxseq
	requireAllOK(t, recs, publish(t, h, recs))
	collect(t, h, recs)
}

// testReservedHeaders puts records whose headers would speak for the envelope or reach the
// broker's control plane between good ones: each fails permanently and never arrives, the
// good ones are unaffected.
func testReservedHeaders(t *testing.T, h *Harness) {
	topic := h.Topics[0]
	var recs, good []*outbox.Record
	for i, headers := range []map[string]string{
		{"Nats-Rollup": "sub"},
		{"nats-msg-id": "theirs"},
		{"CE-ID": "spoof"},
		{"Ce-Source": "spoof"},
		{"ce_id": "spoof"},
		{"cloudEvents:id": "spoof"},
		{"Subject": "spoof"},
		{"outboxseq": "1"},
		{"OutboxSeq": "1"},
		{"ce-outboxseq": "1"},
		{"Content-Length": "0"},
		{"webhook-signature": "v1,spoof"},
		{"CC": "other.queue"},
		{"content-type": "a/b", "Content-Type": "c/d"},
		{"content-type": "application/cloudevents+json"},
		{"note": "line\r\nNats-Rollup: sub"},
	} {
		g := NewRecord(topic, "reserved-key", fmt.Appendf(nil, `{"n":%d}`, i))
		bad := NewRecord(topic, "reserved-key", []byte(`{"bad":true}`))
		bad.Headers = headers
		good = append(good, g)
		recs = append(recs, g, bad)
	}
	res := publish(t, h, recs)
	for i, err := range res {
		if i%2 == 1 {
			if !sink.IsPermanent(err) {
				t.Errorf("record with headers %q: got %v, want a permanent error", recs[i].Headers, err)
			}
		} else if err != nil {
			t.Errorf("good message %d: %v", i, err)
		}
	}
	// collect fails on any message it was not told about: the refused ones must not arrive.
	arrived := collect(t, h, good)
	checkKeyOrder(t, good, arrived)
}

// Retrier stands in for the relay in outage tests: it keeps the messages a Publish failed and
// publishes them again, ahead of newer ones, until they are acknowledged, checking that every
// result is success (a broker-reported duplicate included) or retryable and that Publish
// returns within the sink's publish timeout.
type Retrier struct {
	T       *testing.T
	Sink    sink.Sink
	Timeout time.Duration // the sink's publish timeout
	// Unavailable, when set, requires every failure to be marked sink.Unavailable: the
	// outage is the broker's, and no message may spend an attempt on it.
	Unavailable bool
	Pending     []*outbox.Record // failed, to publish again, in order
	Acked       []*outbox.Record // in acknowledgement order
}

// Round publishes the pending messages plus fresh ones and reports how many were
// acknowledged.
func (r *Retrier) Round(fresh []*outbox.Record) int {
	r.T.Helper()
	batch := append(r.Pending, fresh...)
	r.Pending = nil
	start := time.Now()
	res := r.Sink.Publish(context.Background(), batch)
	if d := time.Since(start); d > r.Timeout+time.Second {
		r.T.Errorf("Publish took %s, more than the publish timeout %s", d, r.Timeout)
	}
	if len(res) != len(batch) {
		r.T.Fatalf("Publish returned %d results for %d messages", len(res), len(batch))
	}
	ok := 0
	for i, err := range res {
		switch {
		case err == nil, sink.IsDuplicate(err):
			ok++
			r.Acked = append(r.Acked, batch[i])
		case sink.IsPermanent(err):
			r.T.Fatalf("message %d: permanent error during an outage: %v", i, err)
		case r.Unavailable && !sink.IsUnavailable(err):
			r.T.Fatalf("message %d: failure during an outage not marked unavailable: %v", i, err)
		default:
			r.Pending = append(r.Pending, batch[i])
		}
	}
	return ok
}

// FreshBatch is n new records of topic "orders" over five keys, their payloads naming the
// round and their index.
func FreshBatch(n, round int) []*outbox.Record {
	recs := make([]*outbox.Record, n)
	for i := range recs {
		recs[i] = NewRecord("orders", fmt.Sprintf("key-%d", i%5), fmt.Appendf(nil, `{"round":%d,"i":%d}`, round, i))
	}
	return recs
}
