package binlog_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay/binlog"
)

// TestValidate: Validate refuses the settings New refuses, naming the same field, without a
// database: the connections (DSN, DB) are left to New.
func TestValidate(t *testing.T) {
	t.Parallel()
	for _, good := range []binlog.Config{{}, {Table: "shop.outbox", Name: "orders-1:a.b", BatchSize: 10, MaxInFlight: 10}} {
		if err := good.Validate(); err != nil {
			t.Fatalf("Validate(%+v): %v", good, err)
		}
	}
	for _, tc := range []struct {
		field string
		edit  func(*binlog.Config)
	}{
		{"table", func(c *binlog.Config) { c.Table = "a.b.c" }},
		{"name", func(c *binlog.Config) { c.Name = "a b" }},
		{"name", func(c *binlog.Config) { c.Name = "a\nb" }},
		{"name", func(c *binlog.Config) { c.Name = strings.Repeat("n", 65) }},
		{"batch_size", func(c *binlog.Config) { c.BatchSize = -1 }},
		{"workers", func(c *binlog.Config) { c.Workers = 257 }},
		{"max_in_flight", func(c *binlog.Config) { c.MaxInFlight = -5 }},
		{"reconnect_interval", func(c *binlog.Config) { c.ReconnectInterval = time.Nanosecond }},
		{"position_interval", func(c *binlog.Config) { c.PositionInterval = time.Millisecond }},
		{"heartbeat_interval", func(c *binlog.Config) { c.HeartbeatInterval = 20 * time.Millisecond }},
	} {
		var c binlog.Config
		tc.edit(&c)
		var ce *outbox.ConfigError
		if err := c.Validate(); !errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want a ConfigError for %s", c, err, tc.field)
		}
	}
}
