package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/ascii"
	"github.com/outboxgo/outbox/sink"
)

func TestCheckSubject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		subject string
		ok      bool
	}{
		{"orders", true},
		{"orders.created", true},
		{"a.b.c.d", true},
		{"orders-v1_x", true},
		{"a*b.c>d", true}, // only whole-token wildcards are wildcards
		{"café.commande", true},
		{"", false},
		{"orders created", false},
		{"orders\tcreated", false},
		{"orders\r\n", false},
		{"orders\x00", false},
		{"orders\x7f", false},
		{"orders.*", false},
		{"*.orders", false},
		{"orders.>", false},
		{">", false},
		{".orders", false},
		{"orders.", false},
		{"orders..created", false},
		{strings.Repeat("a", maxSubjectLen), true},
		{strings.Repeat("a", maxSubjectLen+1), false},
	}
	for _, tc := range tests {
		reason := checkSubject(tc.subject)
		if (reason == "") != tc.ok {
			t.Errorf("checkSubject(%q) = %q, want ok=%v", tc.subject, reason, tc.ok)
		}
	}
}

func TestSubjectCache(t *testing.T) {
	t.Parallel()
	c := subjectCache{prefix: "app."}
	for i := 0; i < 2; i++ { // second round from the cache
		if s, err := c.get("orders"); s != "app.orders" || err != nil {
			t.Errorf("get(orders) = %q, %v", s, err)
		}
		if _, err := c.get("bad topic"); !sink.IsPermanent(err) || !strings.Contains(err.Error(), "bad topic") {
			t.Errorf("get(bad topic) error %v, want a permanent error naming the topic", err)
		}
	}
}

func TestBatchTexts(t *testing.T) {
	t.Parallel()
	inbox := "_INBOX.abc."
	msgs := make([]*outbox.Record, 12)
	for i := range msgs {
		msgs[i] = &outbox.Record{Message: outbox.Message{ID: outbox.NewID()},
			CreatedAt: time.Date(2026, 12, 5, 7, 0, i, i*1000, time.FixedZone("x", 3600))}
	}
	msgs[3].CreatedAt = time.Time{}
	for i := range msgs {
		msgs[i].Seq = int64(i) * 1000003 // 0 for the first: no position
	}
	texts := batchTexts(inbox, 42, msgs)
	for i, tx := range texts {
		id, idx, ok := parseReply(tx.reply, inbox)
		if !ok || id != 42 || idx != i {
			t.Errorf("parseReply(%q) = %d, %d, %v; want 42, %d", tx.reply, id, idx, ok, i)
		}
		if tx.id != msgs[i].ID.String() {
			t.Errorf("id text %q, want %q", tx.id, msgs[i].ID.String())
		}
		want := ""
		if !msgs[i].CreatedAt.IsZero() {
			want = msgs[i].CreatedAt.UTC().Format(time.RFC3339Nano)
		}
		if tx.time != want {
			t.Errorf("time text %q, want %q", tx.time, want)
		}
		want = ""
		if msgs[i].Seq > 0 {
			want = strconv.FormatInt(msgs[i].Seq, 10)
		}
		if tx.seq != want {
			t.Errorf("seq text %q, want %q", tx.seq, want)
		}
	}
	for _, bad := range []string{"_INBOX.abc", "_INBOX.other.1.2", "_INBOX.abc.1", "_INBOX.abc.x.1", "_INBOX.abc.1.-1", "_INBOX.abc.1.y"} {
		if _, _, ok := parseReply(bad, inbox); ok {
			t.Errorf("parseReply(%q) accepted", bad)
		}
	}
}

// The headers are the CloudEvents attributes of sink.Attributes, mapped as the NATS binding
// says (ce- names, percent-encoded values), whatever the record: header() sets them without
// building the attribute list. User headers are copied as they are.
func TestHeaderMatchesAttributes(t *testing.T) {
	t.Parallel()
	s := &Sink{source: "svc"}
	at := time.Date(2026, 12, 5, 7, 0, 1, 230000, time.UTC)
	recs := []*outbox.Record{
		{Message: outbox.Message{ID: outbox.NewID(), Topic: "t", Key: "k", Payload: []byte("x")}, CreatedAt: at, Seq: 7},
		{Message: outbox.Message{ID: outbox.NewID(), Topic: "t", Type: "ty"}, Seq: 1 << 40},
		{Message: outbox.Message{ID: outbox.NewID(), Topic: "t", Key: "k", Headers: map[string]string{
			"Content-Type": "application/json", "traceparent": "00-1", "X-Note": "50% \u20ac"}}, CreatedAt: at},
		{Message: outbox.Message{ID: outbox.NewID(), Topic: "t", Key: "rabatt 50% \u20ac", Type: "a \"b\"", Headers: map[string]string{
			"content-type": "text/plain; charset=\"utf-8\""}}, CreatedAt: at},
		{Message: outbox.Message{ID: outbox.NewID(), Topic: "t", Headers: map[string]string{"content-type": "text/plain", "a": "b"}}, CreatedAt: at.Add(time.Hour)},
	}
	// The reference: user headers, then each attribute under its binding's name, then the
	// dedupe id.
	want := func(r *outbox.Record) natsgo.Header {
		h := natsgo.Header{}
		for name, v := range r.Headers {
			if ascii.EqualFold(name, "content-type") {
				continue
			}
			h[name] = []string{v}
		}
		var id string
		for _, a := range sink.Attributes(r, s.source) {
			if a.Name == "id" {
				id = a.Value
			}
			h[ceHeader(a.Name)] = []string{sink.PercentEncode(a.Value)}
		}
		h[jetstream.MsgIDHeader] = []string{id}
		return h
	}
	texts := batchTexts("_INBOX.x.", 1, recs)
	h := natsgo.Header{}
	var vals []string
	for i, r := range recs {
		vals = s.header(h, vals[:0], r, texts[i])
		if w := want(r); !reflect.DeepEqual(h, w) {
			t.Errorf("record %d: headers\n%v\nwant\n%v", i, h, w)
		}
	}
}

func statusMsg(code, desc string) *natsgo.Msg {
	return &natsgo.Msg{Header: natsgo.Header{"Status": {code}, "Description": {desc}}}
}

func TestParseAck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  *natsgo.Msg
		want func(error) bool
	}{
		{"ack", &natsgo.Msg{Data: []byte(`{"stream":"S","seq":1}`)}, isNil},
		{"duplicate", &natsgo.Msg{Data: []byte(`{"stream":"S","seq":1,"duplicate":true}`)}, sink.IsDuplicate},
		{"duplicate first", &natsgo.Msg{Data: []byte(`{"duplicate":true,"stream":"S","seq":1}`)}, sink.IsDuplicate},
		{"upper-case duplicate key", &natsgo.Msg{Data: []byte(`{"stream":"S","seq":1,"DUPLICATE":true}`)}, sink.IsDuplicate},
		{"escaped duplicate key", &natsgo.Msg{Data: []byte(`{"stream":"S","seq":1,"d\u0075plicate":true}`)}, sink.IsDuplicate},
		{"not a duplicate", &natsgo.Msg{Data: []byte(`{"stream":"S","seq":1,"duplicate":false}`)}, isNil},
		{"ack with domain", &natsgo.Msg{Data: []byte(`{"stream":"S","domain":"hub","seq":7}`)}, isNil},
		{"ack with other field order", &natsgo.Msg{Data: []byte(`{"seq":1,"stream":"S"}`)}, isNil},
		{"stream named error", &natsgo.Msg{Data: []byte(`{"stream":"error","seq":1}`)}, isNil},
		{"api error", &natsgo.Msg{Data: []byte(`{"error":{"code":400,"err_code":10054,"description":"message size exceeds maximum allowed"}}`)}, isAPIError},
		{"api error after stream", &natsgo.Msg{Data: []byte(`{"stream":"S","error":{"code":503,"err_code":10077,"description":"x"}}`)}, isAPIError},
		{"no responders", statusMsg("503", ""), func(err error) bool { return errors.Is(err, jetstream.ErrNoStreamResponse) }},
		{"other status", statusMsg("408", "Request Timeout"), isErr},
		{"empty", &natsgo.Msg{}, isErr},
		{"not json", &natsgo.Msg{Data: []byte(`+OK`)}, isErr},
		{"no stream", &natsgo.Msg{Data: []byte(`{"seq":1}`)}, isErr},
		{"truncated", &natsgo.Msg{Data: []byte(`{"stream":"S"`)}, isErr},
		{"upper-case error key", &natsgo.Msg{Data: []byte(`{"stream":"S","ERROR":{"code":400}}`)}, isAPIError},
		{"escaped error key", &natsgo.Msg{Data: []byte(`{"stream":"S","err\u006fr":{"code":400}}`)}, isAPIError},
	}
	for _, tc := range tests {
		if err := parseAck(tc.msg); !tc.want(err) {
			t.Errorf("%s: parseAck = %v", tc.name, err)
		}
	}
}

func isNil(err error) bool { return err == nil }
func isErr(err error) bool { return err != nil }
func isAPIError(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr)
}

// FuzzParseAck checks the fast path never calls a reply with an error a success: whatever
// parseAck accepts either decodes to an ack without error or is not valid JSON at all.
func FuzzParseAck(f *testing.F) {
	for _, s := range []string{
		`{"stream":"S","seq":1}`,
		`{"stream":"S","seq":1,"duplicate":true}`,
		`{"error":{"code":503,"description":"x"}}`,
		`{"stream":"S","error":{"code":400}}`,
		`{"stream":"a\"error\":b"}`,
		`{"stream":"S","err\u006fr":{"code":400}}`,
		`{"stream":"S","ERROR":{"code":400}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := parseAck(&natsgo.Msg{Data: data})
		if got != nil && !sink.IsDuplicate(got) {
			return
		}
		var resp struct {
			Error     *jetstream.APIError `json:"error"`
			Stream    string              `json:"stream"`
			Duplicate bool                `json:"duplicate"`
		}
		if err := json.Unmarshal(data, &resp); err != nil {
			return
		}
		if resp.Error != nil {
			t.Errorf("parseAck(%q) = %v, but it carries an error: %+v", data, got, resp.Error)
		}
		if resp.Duplicate != sink.IsDuplicate(got) {
			t.Errorf("parseAck(%q) = %v, but the duplicate flag is %v", data, got, resp.Duplicate)
		}
	})
}

// TestClassify holds every kind of publish failure to its class, as Publish reports it
// (classify, then markUnavailable): permanent, unavailable (the sink's as a whole) or plain
// retryable (the message's, counted).
func TestClassify(t *testing.T) {
	t.Parallel()
	const (
		retryable = iota
		permanent
		unavailable
	)
	tests := []struct {
		err  error
		want int
	}{
		{natsgo.ErrMaxPayload, permanent},
		{natsgo.ErrBadSubject, permanent},
		{natsgo.ErrBadHeaderMsg, permanent},
		{jetstream.ErrNoStreamResponse, unavailable},
		{natsgo.ErrNoResponders, unavailable},
		{&jetstream.APIError{Code: 400, ErrorCode: 10054, Description: "message size exceeds maximum allowed"}, permanent},
		{&jetstream.APIError{Code: 400, ErrorCode: 10071, Description: "wrong last sequence: 5"}, permanent},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages exceeded"}, unavailable},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "message too large"}, permanent},
		{&jetstream.APIError{Code: 500, ErrorCode: 10009, Description: "JetStream cluster can not handle request"}, unavailable},
		{&jetstream.APIError{Code: 503, ErrorCode: jetstream.JSErrCodeJetStreamNotEnabled, Description: "jetstream not enabled"}, unavailable},
		{natsgo.ErrDisconnected, unavailable},
		{natsgo.ErrConnectionClosed, unavailable},
		{natsgo.ErrConnectionDraining, unavailable},
		{natsgo.ErrConnectionReconnecting, unavailable},
		{natsgo.ErrStaleConnection, unavailable},
		{natsgo.ErrReconnectBufExceeded, unavailable},
		{natsgo.ErrTimeout, unavailable},
		{&net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}, unavailable},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), unavailable},
		{io.EOF, unavailable},
		{natsgo.ErrAuthorization, unavailable},
		{natsgo.ErrAuthExpired, unavailable},
		{natsgo.ErrAuthRevoked, unavailable},
		{natsgo.ErrAccountAuthExpired, unavailable},
		{context.DeadlineExceeded, unavailable},
		{context.Canceled, unavailable},
		{ErrClosed, unavailable},
		{jetstream.ErrInvalidJSAck, retryable},
		{errors.New("unexpected status 408 Request Timeout in reply to publish"), retryable},
	}
	for _, tc := range tests {
		res := []error{classify(tc.err, "subj")}
		markUnavailable(res)
		got := res[0]
		class := retryable
		switch {
		case sink.IsPermanent(got):
			class = permanent
		case sink.IsUnavailable(got):
			class = unavailable
		}
		if class != tc.want || !errors.Is(got, tc.err) {
			t.Errorf("classify(%v) = %v (class %d), want class %d wrapping the cause", tc.err, got, class, tc.want)
		}
	}
	// A duplicate passes as it is: a success.
	dup := duplicate("S", 7)
	res := []error{classify(dup, "subj")}
	markUnavailable(res)
	if !sink.IsDuplicate(res[0]) || sink.IsUnavailable(res[0]) || sink.IsPermanent(res[0]) {
		t.Errorf("duplicate classified as %v", res[0])
	}
}
