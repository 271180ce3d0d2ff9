package config

import (
	"errors"
	"reflect"
	"testing"

	"github.com/outboxgo/outbox"
)

// TestLibraryError: a library's ConfigError names the setting's YAML path, and so does its
// reason for the settings it mentions, except in quoted values and where no setting has the
// name.
func TestLibraryError(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		lib, block, field, reason string
		wantField, wantReason     string
	}{
		{"kafka", "sinks.ev.kafka.", "tls_key_file", "tls_cert_file and tls_key_file go together",
			"sinks.ev.kafka.tls_key_file", "sinks.ev.kafka.tls_cert_file and sinks.ev.kafka.tls_key_file go together"},
		{"relay", "relay.", "backoff_max", "must be at least backoff_base, both positive",
			"relay.backoff_max", "must be at least relay.backoff_base, both positive"},
		{"nats", "sink.nats.", "stream.subjects", `"a.>.b": has > before the last token`,
			"sink.nats.stream_subjects", `"a.>.b": has > before the last token`},
		{"nats", "sink.nats.", "url", "bounded by publish_timeout",
			"sink.nats.url", "bounded by relay.publish_timeout"},
		{"redis", "sink.redis.", "streams", `topic "max_len": empty stream key`,
			"sink.redis.streams", `topic "max_len": empty stream key`},
		{"binlog", "binlog.", "heartbeat_interval", "must be at least position_interval (or negative to disable)",
			"binlog.heartbeat_interval", "must be at least position_interval (or negative to disable)"},
		{"poll", "poll.", "topics", `"a\"max_len" must not be empty`, "topics", `"a\"max_len" must not be empty`},
	} {
		err := LibraryError(tt.lib, tt.block, &outbox.ConfigError{Field: tt.field, Reason: tt.reason})
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.wantField || ce.Reason != tt.wantReason {
			t.Errorf("LibraryError(%s, %s, %s: %s) = %v, want %s: %s", tt.lib, tt.block, tt.field, tt.reason, err, tt.wantField, tt.wantReason)
		}
	}
	other := errors.New("connection refused")
	if err := LibraryError("kafka", "sink.kafka.", other); err != other {
		t.Errorf("LibraryError(not a ConfigError) = %v", err)
	}
	if err := LibraryError("kafka", "sink.kafka.", nil); err != nil {
		t.Errorf("LibraryError(nil) = %v", err)
	}
}

// TestExplicitZeros: a zero a library would read as its default is refused, naming the
// setting, unless the setting is tagged as defaulting; settings whose default is zero may be.
func TestExplicitZeros(t *testing.T) {
	t.Parallel()
	def := Default()
	for _, tt := range []struct {
		name   string
		edit   func(*Config)
		field  string
		reason string
	}{
		{"duration", func(c *Config) { c.Relay.BackoffMax = 0 }, "relay.backoff_max", "must be positive"},
		{"int", func(c *Config) { c.Binlog.MaxInFlight = 0 }, "binlog.max_in_flight", "must be positive"},
		{"string", func(c *Config) { c.WAL.Slot = "" }, "wal.slot", "required"},
		{"tagged", func(c *Config) { c.WAL.MaxRetainedBytes = 0 }, "", ""},
		{"zero default", func(c *Config) { c.Binlog.ServerID, c.Relay.ID = 0, "" }, "", ""},
		{"bool", func(c *Config) { c.Poll.Notify = false }, "", ""},
	} {
		c := Default()
		tt.edit(&c)
		err := checkExplicit(reflect.ValueOf(c), reflect.ValueOf(def), "")
		if tt.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
			}
			continue
		}
		wantConfigError(t, err, tt.field, tt.field+": "+tt.reason)
	}
}
