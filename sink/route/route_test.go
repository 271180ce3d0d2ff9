package route_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/route"
)

func TestMatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, topic string
		want           bool
	}{
		{"orders.created", "orders.created", true},
		{"orders.created", "orders.paid", false},
		{"orders.*", "orders.created", true},
		{"orders.*", "orders.created.v2", false},
		{"orders.*", "orders", false},
		{"orders.>", "orders.created.v2", true},
		{"orders.>", "orders", false},
		{"*.sms", "notify.sms", true},
		{"*.sms", "notify.email", false},
		{">", "anything.at.all", true},
		{"a.*.c", "a.b.c", true},
		{"a.*.c", "a..c", false},
		{"orders.*", "orders.", false},
	}
	for _, tt := range tests {
		if got := route.Match(tt.pattern, tt.topic); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.pattern, tt.topic, got, tt.want)
		}
	}
}

func TestInvalidRoutes(t *testing.T) {
	t.Parallel()
	s := &recorder{}
	for _, p := range []string{"", "a..b", "a.>.b", "ord*rs.x", "a.b>"} {
		_, err := route.New([]route.Route{{Pattern: p, Sink: s}}, nil)
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != "routes[0].topic" {
			t.Errorf("pattern %q: err = %v, want a ConfigError on routes[0].topic", p, err)
		}
	}
	if _, err := route.New(nil, nil); err == nil {
		t.Error("no routes and no default: want an error")
	}
	if _, err := route.New([]route.Route{{Pattern: "a"}}, nil); err == nil {
		t.Error("route without sink: want an error")
	}
}

type recorder struct {
	mu   sync.Mutex
	got  []string
	fail error
}

func (r *recorder) Publish(_ context.Context, msgs []*outbox.Record) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := make([]error, len(msgs))
	for i, m := range msgs {
		if r.fail != nil {
			res[i] = r.fail
			continue
		}
		r.got = append(r.got, m.Topic+"/"+m.Key)
	}
	return res
}

func (r *recorder) Close() error { return nil }

func rec(topic, key string) *outbox.Record {
	return &outbox.Record{Message: outbox.Message{Topic: topic, Key: key}}
}

func TestPublishSplitsByDestination(t *testing.T) {
	t.Parallel()
	kafka, sms, down := &recorder{}, &recorder{}, &recorder{fail: errors.New("connection refused")}
	r, err := route.New([]route.Route{
		{Pattern: "orders.*", Name: "kafka", Sink: kafka},
		{Pattern: "notify.sms", Name: "sms-provider", Sink: sms},
		{Pattern: "notify.voice", Name: "voice", Sink: down},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*outbox.Record{rec("orders.created", "o1"), rec("notify.sms", "u1"), rec("orders.paid", "o2"),
		rec("unknown.topic", "x"), rec("notify.voice", "u2")}
	res := r.Publish(context.Background(), msgs)
	if len(res) != len(msgs) {
		t.Fatalf("%d results for %d messages", len(res), len(msgs))
	}
	for i := range []int{0, 1, 2} {
		if res[i] != nil {
			t.Errorf("message %d: %v", i, res[i])
		}
	}
	if !sink.IsPermanent(res[3]) || !errors.Is(res[3], route.ErrNoRoute) {
		t.Errorf("unrouted topic: %v, want a permanent ErrNoRoute", res[3])
	}
	if res[4] == nil || sink.IsPermanent(res[4]) {
		t.Errorf("down sink: %v, want a retryable error", res[4])
	}
	if got := kafka.got; len(got) != 2 || got[0] != "orders.created/o1" || got[1] != "orders.paid/o2" {
		t.Errorf("kafka got %v", got)
	}
	if got := sms.got; len(got) != 1 || got[0] != "notify.sms/u1" {
		t.Errorf("sms got %v", got)
	}
}

func TestDefaultSink(t *testing.T) {
	t.Parallel()
	main, other := &recorder{}, &recorder{}
	r, err := route.New([]route.Route{{Pattern: "a.>", Name: "other", Sink: other}}, &route.Route{Name: "main", Sink: main})
	if err != nil {
		t.Fatal(err)
	}
	res := r.Publish(context.Background(), []*outbox.Record{rec("a.b", ""), rec("z", "")})
	if res[0] != nil || res[1] != nil || len(other.got) != 1 || len(main.got) != 1 {
		t.Fatalf("res %v, other %v, main %v", res, other.got, main.got)
	}
}
