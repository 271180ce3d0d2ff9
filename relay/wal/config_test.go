package wal_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay/wal"
)

// TestValidate: Validate refuses the settings New refuses, naming the same field, without a
// database: the connections (ConnString, Pool) are left to New.
func TestValidate(t *testing.T) {
	t.Parallel()
	good := wal.Config{SlotName: "s"}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(%+v): %v", good, err)
	}
	for _, tc := range []struct {
		field string
		edit  func(*wal.Config)
	}{
		{"slot_name", func(c *wal.Config) { c.SlotName = "" }},
		{"slot_name", func(c *wal.Config) { c.SlotName = "Upper" }},
		{"slot_name", func(c *wal.Config) { c.SlotName = strings.Repeat("s", 64) }},
		{"publication", func(c *wal.Config) { c.Publication = "a;drop" }},
		{"table", func(c *wal.Config) { c.Table = "a.b.c" }},
		{"mode", func(c *wal.Config) { c.Mode = "poll" }},
		{"message_prefix", func(c *wal.Config) { c.MessagePrefix = "a\nb" }},
		{"batch_size", func(c *wal.Config) { c.BatchSize = 100001 }},
		{"workers", func(c *wal.Config) { c.Workers = -1 }},
		{"status_interval", func(c *wal.Config) { c.StatusInterval = time.Millisecond }},
		{"max_in_flight", func(c *wal.Config) { c.MaxInFlight = -5 }},
		{"heartbeat_interval", func(c *wal.Config) { c.HeartbeatInterval = time.Millisecond }},
		{"shutdown_timeout", func(c *wal.Config) { c.ShutdownTimeout = -time.Second }},
	} {
		c := good
		tc.edit(&c)
		var ce *outbox.ConfigError
		if err := c.Validate(); !errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("Validate(%+v) = %v, want a ConfigError for %s", c, err, tc.field)
		}
	}
}
