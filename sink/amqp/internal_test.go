package amqp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/internal/confirm"
)

func TestOversize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		size int
		ok   bool
	}{
		{&amqp091.Error{Code: 406, Reason: "PRECONDITION_FAILED - message size 134217729 is larger than configured max size 134217728", Server: true}, 134217729, true},
		{&amqp091.Error{Code: 406, Reason: "PRECONDITION_FAILED - message size 600000000 is larger than max size 536870912", Server: true}, 600000000, true},
		{&amqp091.Error{Code: 406, Reason: "PRECONDITION_FAILED - unknown delivery tag 7", Server: true}, 0, false},
		{&amqp091.Error{Code: 406, Reason: "PRECONDITION_FAILED - message size x is larger than max size 1", Server: true}, 0, false},
		{&amqp091.Error{Code: 404, Reason: "NOT_FOUND - message size 5 is larger than max size 1", Server: true}, 0, false},
		{errors.New("message size 5 is larger than max size 1"), 0, false},
		{nil, 0, false},
	}
	for _, tc := range tests {
		size, ok := oversize(tc.err)
		if size != tc.size || ok != tc.ok {
			t.Errorf("oversize(%v) = %d, %v; want %d, %v", tc.err, size, ok, tc.size, tc.ok)
		}
	}
}

// newTestBatch is a batch of records with the given payload sizes, all pending.
func newTestBatch(sizes ...int) (*batch, []error) {
	res := make([]error, len(sizes))
	b := &batch{Batch: confirm.New(res), exchange: "ex"}
	for i, n := range sizes {
		r := &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: "orders", Payload: make([]byte, n)}}
		b.msgs = append(b.msgs, r)
		b.keys = append(b.keys, "app.orders")
		b.ids = append(b.ids, r.ID.String())
		b.Pending(i)
	}
	return b, res
}

func newTestSession(b *batch) *session {
	ss := &session{tags: map[uint64]slotRef{}, returns: map[returnKey]returned{}, dead: make(chan struct{})}
	for i := range b.msgs {
		ss.tags[uint64(i+1)] = slotRef{b, i}
	}
	return ss
}

// TestEndOversize: when the broker closes the channel for a message over its
// max_message_size, every waiting message of that size fails permanently and the others
// retryably.
func TestEndOversize(t *testing.T) {
	t.Parallel()
	b, res := newTestBatch(10, 200, 30, 200)
	ss := newTestSession(b)
	ss.end(&amqp091.Error{Code: 406, Reason: "PRECONDITION_FAILED - message size 200 is larger than configured max size 100", Server: true})
	for i, err := range res {
		big := len(b.msgs[i].Payload) == 200
		if err == nil || sink.IsPermanent(err) != big {
			t.Errorf("message %d (%d bytes): %v, want permanent=%v", i, len(b.msgs[i].Payload), err, big)
		}
	}
	select {
	case <-b.Done():
	default:
		t.Error("batch not done after every message settled")
	}
	select {
	case <-ss.dead:
	default:
		t.Error("session not marked dead")
	}
	if ss.register(99, slotRef{b, 0}) {
		t.Error("a dead session accepted a message")
	}
}

// TestConfirmCorrelation: a return recorded before the ack of the same message makes that
// message unroutable; other acks succeed; nacks fail retryably.
func TestConfirmCorrelation(t *testing.T) {
	t.Parallel()
	b, res := newTestBatch(1, 1, 1, 1)
	b.keys[1] = "nowhere"
	b.keys[3] = "nowhere"
	b.ids[3] = b.ids[1] // the same message twice: each return settles one ack
	ss := newTestSession(b)
	ret := func(i int) {
		k := returnKey{b.ids[i], b.keys[i]}
		e := ss.returns[k]
		e.n++
		e.code, e.text = amqp091.NoRoute, "NO_ROUTE"
		ss.returns[k] = e
	}
	ss.confirm(amqp091.Confirmation{DeliveryTag: 1, Ack: true})
	ret(1)
	ret(3)
	ss.confirm(amqp091.Confirmation{DeliveryTag: 2, Ack: true})
	ss.confirm(amqp091.Confirmation{DeliveryTag: 3, Ack: false})
	ss.confirm(amqp091.Confirmation{DeliveryTag: 4, Ack: true})
	ss.confirm(amqp091.Confirmation{DeliveryTag: 4, Ack: true}) // unknown now: ignored
	if res[0] != nil {
		t.Errorf("acked message: %v", res[0])
	}
	for _, i := range []int{1, 3} {
		err := res[i]
		if !errors.Is(err, ErrUnroutable) || sink.IsPermanent(err) || !strings.Contains(err.Error(), `exchange "ex" with routing key "nowhere"`) {
			t.Errorf("returned message %d: %v", i, err)
		}
	}
	if !errors.Is(res[2], ErrNacked) || sink.IsPermanent(res[2]) {
		t.Errorf("nacked message: %v", res[2])
	}
	if len(ss.returns) != 0 || len(ss.tags) != 0 {
		t.Errorf("bookkeeping left: %d returns, %d tags", len(ss.returns), len(ss.tags))
	}
}

func TestRoutingKeys(t *testing.T) {
	t.Parallel()
	r := routingKeys{prefix: "app.", exact: map[string]string{"orders": "orders-queue"}}
	for i := 0; i < 2; i++ { // the second round from the cache
		if k, err := r.get("orders"); k != "orders-queue" || err != nil {
			t.Errorf("get(orders) = %q, %v", k, err)
		}
		if k, err := r.get("users.created"); k != "app.users.created" || err != nil {
			t.Errorf("get(users.created) = %q, %v", k, err)
		}
		if _, err := r.get(strings.Repeat("x", 252)); !sink.IsPermanent(err) {
			t.Errorf("get(252 bytes) = %v, want permanent (prefix makes it 256)", err)
		}
		if k, err := r.get(strings.Repeat("x", 251)); len(k) != 255 || err != nil {
			t.Errorf("get(251 bytes) = %d bytes, %v", len(k), err)
		}
	}
}

func TestCheckName(t *testing.T) {
	t.Parallel()
	for s, ok := range map[string]bool{
		"":                       true,
		"orders.created":         true,
		"café":                   true,
		strings.Repeat("a", 255): true,
		strings.Repeat("a", 256): false,
		"a\tb":                   false,
		"a\x7f":                  false,
		"\xff":                   false,
	} {
		if got := checkName(s) == ""; got != ok {
			t.Errorf("checkName(%q) ok=%v, want %v", s, got, ok)
		}
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	if got := redactURL("amqp://user:s3cret@host:5672/vh"); strings.Contains(got, "s3cret") || !strings.Contains(got, "host:5672") {
		t.Errorf("redactURL = %q", got)
	}
	if err := checkURL("amqp://user:s3cret@host:bad/"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("checkURL = %v", err)
	}
}

func TestDescribe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string
	}{
		{&amqp091.Error{Code: 404, Reason: "NOT_FOUND - no exchange 'x' in vhost '/'"}, "DeclareExchange"},
		{&amqp091.Error{Code: 403, Reason: "ACCESS_REFUSED - access to exchange 'x' refused"}, "permission"},
		{&amqp091.Error{Code: 320, Reason: "CONNECTION_FORCED - broker forced connection closure"}, "CONNECTION_FORCED"},
	}
	for _, tc := range tests {
		err := lost(tc.err)
		if sink.IsPermanent(err) || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.err) {
			t.Errorf("lost(%v) = %v, want retryable mentioning %q", tc.err, err, tc.want)
		}
	}
}

// TestRead drives the session reader the way the library does: a return handed over before
// the ack of the same message, a connection.blocked, then the channel closing with an error
// while a message waits for its confirmation.
func TestRead(t *testing.T) {
	t.Parallel()
	b, res := newTestBatch(1, 1)
	ss := newTestSession(b)
	ss.done = make(chan struct{})
	confirms := make(chan amqp091.Confirmation, 8)
	returns := make(chan amqp091.Return)
	chClose := make(chan *amqp091.Error, 1)
	connClose := make(chan *amqp091.Error, 1)
	blocked := make(chan amqp091.Blocking)
	go ss.read(confirms, returns, chClose, connClose, blocked, slog.New(slog.DiscardHandler))

	blocked <- amqp091.Blocking{Active: true, Reason: "low on memory"}
	returns <- amqp091.Return{MessageId: b.ids[0], RoutingKey: b.keys[0], ReplyCode: amqp091.NoRoute, ReplyText: "NO_ROUTE"}
	confirms <- amqp091.Confirmation{DeliveryTag: 1, Ack: true}
	// Unbuffered: once this is taken, the reader handled the return, the ack and the block.
	blocked <- amqp091.Blocking{Active: true, Reason: "low on memory"}
	if got := ss.blockedReason(); got != "low on memory" {
		t.Errorf("blocked reason %q", got)
	}
	chClose <- &amqp091.Error{Code: amqp091.NotFound, Reason: "NOT_FOUND - no exchange 'ex' in vhost '/'", Server: true}
	close(confirms)
	<-ss.dead
	<-ss.done
	if !errors.Is(res[0], ErrUnroutable) {
		t.Errorf("returned message: %v, want ErrUnroutable", res[0])
	}
	if err := res[1]; err == nil || sink.IsPermanent(err) || !strings.Contains(err.Error(), "no exchange") {
		t.Errorf("unconfirmed message: %v, want a retryable error with the close reason", err)
	}
	var aerr *amqp091.Error
	if !errors.As(ss.reason(), &aerr) || aerr.Code != amqp091.NotFound {
		t.Errorf("session reason %v", ss.reason())
	}
}

// TestSinkWide holds every kind of publish failure to its class as Publish reports it:
// Unavailable (the sink's as a whole) or counted (the message's, or permanent).
func TestSinkWide(t *testing.T) {
	t.Parallel()
	server := func(code int, reason string) error { return &amqp091.Error{Code: code, Reason: reason, Server: true} }
	tests := []struct {
		err         error
		unavailable bool
	}{
		{notConnected(nil), true},
		{notConnected(server(amqp091.AccessRefused, "ACCESS_REFUSED - Login was refused")), true},
		{ErrClosed, true},
		{notSent(context.DeadlineExceeded), true},
		{notSent(context.Canceled), true},
		{fmt.Errorf("amqp sink: not sent: %w (memory alarm); will retry", errBlocked), true},
		{fmt.Errorf("amqp sink: %w", ErrNacked), true},
		{lost(amqp091.ErrClosed), true},
		{lost(io.EOF), true},
		{lost(server(amqp091.NotFound, "NOT_FOUND - no exchange 'x' in vhost '/'")), true},
		{lost(server(amqp091.AccessRefused, "ACCESS_REFUSED - write access to exchange 'x' refused")), true},
		{lost(server(amqp091.ConnectionForced, "CONNECTION_FORCED - broker forced connection closure")), true},
		{lost(server(amqp091.InternalError, "INTERNAL_ERROR")), true},
		{lost(server(amqp091.PreconditionFailed, "PRECONDITION_FAILED - invalid arg")), false},
		{lost(server(amqp091.FrameError, "FRAME_ERROR")), false},
		{unroutable("x", "k", 312, "NO_ROUTE"), false},
		{tooLargeForBroker(server(amqp091.PreconditionFailed, "message size 10 is larger than configured max size 5")), false},
	}
	for _, tc := range tests {
		res := []error{tc.err}
		markUnavailable(res)
		if sink.IsUnavailable(res[0]) != tc.unavailable || !errors.Is(res[0], tc.err) {
			t.Errorf("%v: unavailable %v, want %v", tc.err, sink.IsUnavailable(res[0]), tc.unavailable)
		}
	}
	if !isAuthErr(amqp091.ErrCredentials) || !isAuthErr(server(amqp091.AccessRefused, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN")) ||
		isAuthErr(server(amqp091.AccessRefused, "ACCESS_REFUSED - write access to exchange 'x' refused")) {
		t.Error("isAuthErr does not tell a refused login from a refused write")
	}
}
