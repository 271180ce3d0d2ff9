package nats

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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

func TestReplySubjects(t *testing.T) {
	t.Parallel()
	inbox := "_INBOX.abc."
	subs := replySubjects(inbox, 42, 12)
	for i, s := range subs {
		id, idx, ok := parseReply(s, inbox)
		if !ok || id != 42 || idx != i {
			t.Errorf("parseReply(%q) = %d, %d, %v; want 42, %d", s, id, idx, ok, i)
		}
	}
	for _, bad := range []string{"_INBOX.abc", "_INBOX.other.1.2", "_INBOX.abc.1", "_INBOX.abc.x.1", "_INBOX.abc.1.-1", "_INBOX.abc.1.y"} {
		if _, _, ok := parseReply(bad, inbox); ok {
			t.Errorf("parseReply(%q) accepted", bad)
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
		{"duplicate", &natsgo.Msg{Data: []byte(`{"stream":"S","seq":1,"duplicate":true}`)}, isNil},
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
		if parseAck(&natsgo.Msg{Data: data}) != nil {
			return
		}
		var resp struct {
			Error  *jetstream.APIError `json:"error"`
			Stream string              `json:"stream"`
		}
		if err := json.Unmarshal(data, &resp); err != nil {
			return
		}
		if resp.Error != nil {
			t.Errorf("parseAck(%q) = nil, but it carries an error: %+v", data, resp.Error)
		}
	})
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err       error
		permanent bool
	}{
		{natsgo.ErrMaxPayload, true},
		{natsgo.ErrBadSubject, true},
		{natsgo.ErrBadHeaderMsg, true},
		{jetstream.ErrNoStreamResponse, false},
		{natsgo.ErrNoResponders, false},
		{&jetstream.APIError{Code: 400, ErrorCode: 10054, Description: "message size exceeds maximum allowed"}, true},
		{&jetstream.APIError{Code: 400, ErrorCode: 10071, Description: "wrong last sequence: 5"}, true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "maximum messages exceeded"}, false},
		{&jetstream.APIError{Code: 503, ErrorCode: 10077, Description: "message too large"}, true},
		{&jetstream.APIError{Code: 500, ErrorCode: 10009, Description: "JetStream cluster can not handle request"}, false},
		{natsgo.ErrDisconnected, false},
		{natsgo.ErrConnectionClosed, false},
		{natsgo.ErrReconnectBufExceeded, false},
		{natsgo.ErrTimeout, false},
	}
	for _, tc := range tests {
		got := classify(tc.err, "subj")
		if sink.IsPermanent(got) != tc.permanent || !errors.Is(got, tc.err) {
			t.Errorf("classify(%v) = %v (permanent %v), want permanent %v wrapping the cause", tc.err, got, sink.IsPermanent(got), tc.permanent)
		}
	}
}
