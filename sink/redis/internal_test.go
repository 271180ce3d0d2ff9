package redis

import (
	"context"
	"errors"
	"io"
	"reflect"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name      string
		err       error
		parent    context.Context
		permanent bool
		is        error
	}{
		{"ok", nil, context.Background(), false, nil},
		{"wrongtype", redisError("WRONGTYPE Operation against a key holding the wrong kind of value"), context.Background(), true, nil},
		{"oom", errors.New("OOM command not allowed when used memory > 'maxmemory'."), context.Background(), false, nil},
		{"max clients", errors.New("ERR max number of clients reached"), context.Background(), false, nil},
		{"wrongpass", errors.New("WRONGPASS invalid username-password pair or user is disabled."), context.Background(), false, nil},
		{"noperm", errors.New("NOPERM this user has no permissions to run the 'xadd' command"), context.Background(), false, nil},
		{"readonly", errors.New("READONLY You can't write against a read only replica."), context.Background(), false, nil},
		{"loading", errors.New("LOADING Redis is loading the dataset in memory"), context.Background(), false, nil},
		{"unknown server error", errors.New("ERR something new"), context.Background(), false, nil},
		{"eof", io.EOF, context.Background(), false, io.EOF},
		{"closed", goredis.ErrClosed, context.Background(), false, goredis.ErrClosed},
		{"caller canceled", context.Canceled, canceled, false, context.Canceled},
		{"own timeout", context.DeadlineExceeded, context.Background(), false, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := classify(tc.err, "s", tc.parent, 0)
			if (got == nil) != (tc.err == nil) {
				t.Fatalf("classify(%v) = %v", tc.err, got)
			}
			if got == nil {
				return
			}
			if sink.IsPermanent(got) != tc.permanent {
				t.Errorf("classify(%v) = %v, permanent %v, want %v", tc.err, got, sink.IsPermanent(got), tc.permanent)
			}
			if !errors.Is(got, tc.err) {
				t.Errorf("classify(%v) = %v does not wrap the cause", tc.err, got)
			}
			if tc.is != nil && !errors.Is(got, tc.is) {
				t.Errorf("classify(%v) = %v does not wrap %v", tc.err, got, tc.is)
			}
		})
	}
}

// redisError is an error reply, as go-redis reports it.
type redisError string

func (e redisError) Error() string { return string(e) }
func (redisError) RedisError()     {}

func TestSplitWaves(t *testing.T) {
	t.Parallel()
	mk := func(keys ...string) []*outbox.Record {
		var recs []*outbox.Record
		for _, k := range keys {
			recs = append(recs, &outbox.Record{Message: outbox.Message{Key: k}})
		}
		return recs
	}
	tests := []struct {
		keys []string
		want [][]int
	}{
		{[]string{"a", "b", "c"}, nil},
		{[]string{"", "", "a"}, nil},
		{[]string{"a", "a"}, [][]int{{0}, {1}}},
		{[]string{"a", "b", "", "a", "b", "a", ""}, [][]int{{0, 1, 2, 6}, {3, 4}, {5}}},
	}
	for _, tc := range tests {
		if got := splitWaves(mk(tc.keys...)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitWaves(%q) = %v, want %v", tc.keys, got, tc.want)
		}
	}
}

func TestStreamKey(t *testing.T) {
	t.Parallel()
	s := &Sink{prefix: "p:", streams: map[string]string{"orders": "exact"}}
	for topic, want := range map[string]string{"orders": "exact", "users": "p:users"} {
		if got := s.streamKey(topic); got != want {
			t.Errorf("streamKey(%q) = %q, want %q", topic, got, want)
		}
	}
}
