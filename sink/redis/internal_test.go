package redis

import (
	"context"
	"errors"
	"io"
	"net"
	"reflect"
	"syscall"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
)

// TestClassify holds every kind of XADD failure to its class as Publish reports it
// (classify, then markUnavailable): permanent, unavailable (the sink's as a whole) or plain
// retryable (the message's, counted).
func TestClassify(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	const (
		ok = iota
		retryable
		permanent
		unavailable
	)
	bg := context.Background()
	tests := []struct {
		name   string
		err    error
		parent context.Context
		want   int
		is     error
	}{
		{"ok", nil, bg, ok, nil},
		{"wrongtype", redisError("WRONGTYPE Operation against a key holding the wrong kind of value"), bg, permanent, nil},
		{"oom", redisError("OOM command not allowed when used memory > 'maxmemory'."), bg, unavailable, nil},
		{"max clients", redisError("ERR max number of clients reached"), bg, unavailable, nil},
		{"wrongpass", redisError("WRONGPASS invalid username-password pair or user is disabled."), bg, unavailable, nil},
		{"noauth", redisError("NOAUTH Authentication required."), bg, unavailable, nil},
		{"noperm", redisError("NOPERM this user has no permissions to run the 'xadd' command"), bg, unavailable, nil},
		{"readonly", redisError("READONLY You can't write against a read only replica."), bg, unavailable, nil},
		{"loading", redisError("LOADING Redis is loading the dataset in memory"), bg, unavailable, nil},
		{"masterdown", redisError("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."), bg, unavailable, nil},
		{"clusterdown", redisError("CLUSTERDOWN The cluster is down"), bg, unavailable, nil},
		{"tryagain", redisError("TRYAGAIN Multiple keys request during rehashing of slot"), bg, unavailable, nil},
		{"busy", redisError("BUSY Redis is busy running a script."), bg, unavailable, nil},
		{"misconf", redisError("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk."), bg, unavailable, nil},
		{"unknown server error", redisError("ERR something new"), bg, retryable, nil},
		{"invalid stream id", redisError("ERR The ID specified in XADD is equal or smaller than the target stream top item"), bg, retryable, nil},
		{"eof", io.EOF, bg, unavailable, io.EOF},
		{"refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, bg, unavailable, syscall.ECONNREFUSED},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, bg, unavailable, syscall.ECONNRESET},
		{"closed", goredis.ErrClosed, bg, unavailable, goredis.ErrClosed},
		{"no reply", errNoReply, bg, unavailable, errNoReply},
		{"caller canceled", context.Canceled, canceled, unavailable, context.Canceled},
		{"own timeout", context.DeadlineExceeded, bg, unavailable, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := []error{classify(tc.err, "s", tc.parent, 0)}
			markUnavailable(res)
			got := res[0]
			class := ok
			switch {
			case got == nil:
			case sink.IsPermanent(got):
				class = permanent
			case sink.IsUnavailable(got):
				class = unavailable
			default:
				class = retryable
			}
			if class != tc.want {
				t.Errorf("classify(%v) = %v, class %d, want %d", tc.err, got, class, tc.want)
			}
			if got != nil && !errors.Is(got, tc.err) {
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
