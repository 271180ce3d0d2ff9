package poll_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay/poll"
)

// TestValidate: Validate refuses what New refuses, naming the same field, without a store;
// New alone requires the Store.
func TestValidate(t *testing.T) {
	t.Parallel()
	for _, good := range []poll.Config{{}, {Topics: []string{"orders.created", "notify.sms"}, Retention: time.Hour, Workers: 256}} {
		if err := good.Validate(); err != nil {
			t.Fatalf("Validate(%+v): %v", good, err)
		}
	}
	if _, err := poll.New(poll.Config{}); !fieldIs(err, "store") {
		t.Errorf("New without a store = %v, want a ConfigError for store", err)
	}
	for _, tc := range []struct {
		field string
		cfg   poll.Config
	}{
		{"batch_size", poll.Config{BatchSize: -1}},
		{"batch_size", poll.Config{BatchSize: 100001}},
		{"max_batch_bytes", poll.Config{MaxBatchBytes: -1}},
		{"poll_interval", poll.Config{PollInterval: time.Microsecond}},
		{"workers", poll.Config{Workers: 257}},
		{"member_ttl", poll.Config{MemberTTL: time.Second, HeartbeatInterval: time.Second}},
		{"retention", poll.Config{Retention: -time.Second}},
		{"topics", poll.Config{Topics: []string{"a", ""}}},
		{"topics", poll.Config{Topics: []string{"a\nb"}}},
		{"topics", poll.Config{Topics: []string{strings.Repeat("t", 256)}}},
		{"topics", poll.Config{Topics: []string{"\xff"}}},
	} {
		if err := tc.cfg.Validate(); !fieldIs(err, tc.field) {
			t.Errorf("Validate(%+v) = %v, want a ConfigError for %s", tc.cfg, err, tc.field)
		}
	}
}

func fieldIs(err error, field string) bool {
	var ce *outbox.ConfigError
	return errors.As(err, &ce) && ce.Field == field && errors.Is(err, outbox.ErrInvalidConfig)
}
