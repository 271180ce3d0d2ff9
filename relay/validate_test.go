package relay_test

import (
	"errors"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
)

// TestValidate: Validate checks the settings, naming the field as New does, and leaves the
// Source and Sink, which New requires, unchecked.
func TestValidate(t *testing.T) {
	t.Parallel()
	if err := (relay.Config{}).Validate(); err != nil {
		t.Fatalf("Validate(zero Config): %v", err)
	}
	for _, tc := range []struct {
		field string
		cfg   relay.Config
	}{
		{"workers", relay.Config{Workers: -1}},
		{"max_attempts", relay.Config{MaxAttempts: -1}},
		{"backoff_max", relay.Config{BackoffBase: time.Minute, BackoffMax: time.Second}},
		{"backoff_base", relay.Config{BackoffBase: -time.Second}},
		{"publish_timeout", relay.Config{PublishTimeout: -1}},
		{"shutdown_timeout", relay.Config{ShutdownTimeout: -1}},
		{"batch_timeout", relay.Config{BatchTimeout: -1}},
		{"max_probe_interval", relay.Config{MaxProbeInterval: time.Millisecond}},
		{"failure_summary_interval", relay.Config{FailureSummaryInterval: -1}},
	} {
		var ce *outbox.ConfigError
		if err := tc.cfg.Validate(); !errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want a ConfigError for %s", tc.cfg, err, tc.field)
		}
	}
}
