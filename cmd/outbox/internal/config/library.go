package config

import (
	"errors"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/binlog"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/relay/wal"
	"github.com/outboxgo/outbox/sink/amqp"
	"github.com/outboxgo/outbox/sink/kafka"
	"github.com/outboxgo/outbox/sink/mqtt"
	natssink "github.com/outboxgo/outbox/sink/nats"
	redissink "github.com/outboxgo/outbox/sink/redis"
	"github.com/outboxgo/outbox/sink/webhook"
)

// The blocks of settings map onto the Configs of the libraries, field by field (a block's
// fields mirror its Config's in snake_case). The libraries' Validate methods check them: the
// rules of a sink or a source live in its package only, and the command names their errors
// by YAML path (LibraryError). The mappings leave out what only exists at run time: loggers,
// connections, the source and the sink of the relay.

// SinkConfig returns the block as the NATS sink's Config; publishTimeout is
// relay.publish_timeout.
func (n *NATS) SinkConfig(publishTimeout time.Duration) natssink.Config {
	c := natssink.Config{
		URL:            string(n.URL),
		Name:           n.Name,
		Source:         n.Source,
		SubjectPrefix:  n.SubjectPrefix,
		PublishTimeout: publishTimeout,
		MaxPending:     n.MaxPending,
		ReconnectWait:  n.ReconnectWait,
	}
	if n.Stream != "" {
		c.Stream = &jetstream.StreamConfig{
			Name:     n.Stream,
			Subjects: n.EffectiveStreamSubjects(),
			Storage:  jetstream.FileStorage,
		}
	}
	return c
}

// SinkConfig returns the block as the Kafka sink's Config.
func (k *Kafka) SinkConfig() kafka.Config {
	return kafka.Config{
		Brokers:               k.Brokers,
		ClientID:              k.ClientID,
		Source:                k.Source,
		TopicPrefix:           k.TopicPrefix,
		Topics:                k.Topics,
		AutoCreateTopics:      k.AutoCreateTopics,
		TLSEnabled:            k.TLSEnabled,
		TLSCAFile:             k.TLSCAFile,
		TLSCertFile:           k.TLSCertFile,
		TLSKeyFile:            k.TLSKeyFile,
		TLSInsecureSkipVerify: k.TLSInsecureSkipVerify,
		SASLMechanism:         k.SASLMechanism,
		SASLUser:              k.SASLUser,
		SASLPassword:          string(k.SASLPassword),
		ProduceTimeout:        k.ProduceTimeout,
		MaxBufferedRecords:    k.MaxBufferedRecords,
		MaxMessageBytes:       k.MaxMessageBytes,
		Linger:                k.Linger,
		Compression:           k.Compression,
	}
}

// SinkConfig returns the block as the AMQP sink's Config. The exchange is declared when
// declare_exchange.kind is set.
func (a *AMQP) SinkConfig() amqp.Config {
	c := amqp.Config{
		URL:              string(a.URL),
		Exchange:         a.Exchange,
		RoutingKeyPrefix: a.RoutingKeyPrefix,
		RoutingKeys:      a.RoutingKeys,
		Source:           a.Source,
		ConnectionName:   a.ConnectionName,
		PublishTimeout:   a.PublishTimeout,
		ConnectTimeout:   a.ConnectTimeout,
		Heartbeat:        a.Heartbeat,
		ReconnectWait:    a.ReconnectWait,
		MaxMessageBytes:  a.MaxMessageBytes,
	}
	if d := a.DeclareExchange; d.Kind != "" {
		c.DeclareExchange = &amqp.Exchange{Name: d.Name, Kind: d.Kind, Transient: d.Transient}
	}
	return c
}

// SinkConfig returns the block as the MQTT sink's Config.
func (m *MQTT) SinkConfig() mqtt.Config {
	return mqtt.Config{
		Broker:         m.Broker,
		ClientID:       m.ClientID,
		Username:       m.Username,
		Password:       string(m.Password),
		TopicPrefix:    m.TopicPrefix,
		TopicSeparator: m.TopicSeparator,
		Source:         m.Source,
		KeepAlive:      m.KeepAlive,
		ConnectTimeout: m.ConnectTimeout,
		PublishTimeout: m.PublishTimeout,
		ReconnectWait:  m.ReconnectWait,
	}
}

// SinkConfig returns the block as the Redis sink's Config.
func (r *Redis) SinkConfig() redissink.Config {
	return redissink.Config{
		Addr:           r.Addr,
		Username:       r.Username,
		Password:       string(r.Password),
		DB:             r.DB,
		TLS:            r.TLS,
		Source:         r.Source,
		StreamPrefix:   r.StreamPrefix,
		Streams:        r.Streams,
		MaxLen:         int64(r.MaxLen),
		Approximate:    r.Approximate,
		PublishTimeout: r.PublishTimeout,
	}
}

// SinkConfig returns the block as the webhook sink's Config.
func (w *Webhook) SinkConfig() webhook.Config {
	c := webhook.Config{
		URL:            string(w.URL),
		Timeout:        w.Timeout,
		MaxConcurrency: w.MaxConcurrency,
		Source:         w.Source,
	}
	if len(w.URLs) > 0 {
		c.URLs = make(map[string]string, len(w.URLs))
		for topic, u := range w.URLs {
			c.URLs[topic] = string(u)
		}
	}
	for _, s := range w.Secrets {
		c.Secrets = append(c.Secrets, string(s))
	}
	if len(w.Headers) > 0 {
		c.Headers = make(map[string]string, len(w.Headers))
		for name, v := range w.Headers {
			c.Headers[name] = string(v)
		}
	}
	return c
}

// PollConfig returns the polling source's Config, without its Store.
func (c *Config) PollConfig() poll.Config {
	return poll.Config{
		BatchSize:     c.Poll.BatchSize,
		MaxBatchBytes: c.Poll.MaxBatchBytes,
		PollInterval:  c.Poll.Interval,
		Workers:       c.Poll.Workers,
		RelayID:       c.Relay.ID,
		Topics:        c.Topics,
		Retention:     c.Retention,
		DisableNotify: !c.Poll.Notify,
		// Heartbeats five times per TTL: a relay survives four lost ones.
		HeartbeatInterval: c.Poll.MemberTTL / 5,
		MemberTTL:         c.Poll.MemberTTL,
	}
}

// WALConfig returns the WAL source's Config, without its connections (ConnString, Pool).
func (c *Config) WALConfig() wal.Config {
	return wal.Config{
		Mode:             wal.Mode(c.WAL.Mode),
		Table:            c.Table,
		KeepAcked:        c.WAL.KeepAcked,
		SlotName:         c.WAL.Slot,
		Publication:      c.WAL.Publication,
		MessagePrefix:    c.WAL.MessagePrefix,
		BatchSize:        c.WAL.BatchSize,
		Workers:          c.WAL.Workers,
		MaxInFlight:      c.WAL.MaxInFlight,
		MaxRetainedBytes: int64(c.WAL.MaxRetainedBytes),
		ShutdownTimeout:  c.Relay.ShutdownTimeout,
	}
}

// BinlogConfig returns the binlog source's Config, without its connections (DSN, DB). Call
// it after Validate, which bounds binlog.server_id.
func (c *Config) BinlogConfig() binlog.Config {
	return binlog.Config{
		Table:           c.Table,
		Name:            c.Binlog.Name,
		ServerID:        uint32(c.Binlog.ServerID),
		KeepAcked:       c.Binlog.KeepAcked,
		BatchSize:       c.Binlog.BatchSize,
		Workers:         c.Binlog.Workers,
		MaxInFlight:     c.Binlog.MaxInFlight,
		ShutdownTimeout: c.Relay.ShutdownTimeout,
	}
}

// RelayConfig returns the relay's Config, without its Source and Sink.
func (c *Config) RelayConfig() relay.Config {
	return relay.Config{
		MaxAttempts:     c.Relay.MaxAttempts,
		BackoffBase:     c.Relay.BackoffBase,
		BackoffMax:      c.Relay.BackoffMax,
		PublishTimeout:  c.Relay.PublishTimeout,
		BatchTimeout:    c.Relay.BatchTimeout,
		ShutdownTimeout: c.Relay.ShutdownTimeout,
		PauseInterval:   c.Relay.PauseInterval,
	}
}

// libraryFields maps the fields of the libraries' *outbox.ConfigError that are not named as
// the setting they come from, "library:field", to the setting's name in its block, or with a
// leading "=" to its full YAML path.
var libraryFields = map[string]string{
	"poll:poll_interval":      "interval",
	"poll:retention":          "=retention",
	"poll:topics":             "=topics",
	"poll:store":              "=database_url",
	"wal:slot_name":           "slot",
	"wal:conn_string":         "=database_url",
	"wal:pool":                "=database_url",
	"wal:table":               "=table",
	"wal:shutdown_timeout":    "=relay.shutdown_timeout",
	"binlog:table":            "=table",
	"binlog:dsn":              "=database_url",
	"binlog:db":               "=database_url",
	"binlog:shutdown_timeout": "=relay.shutdown_timeout",
	"nats:stream.name":        "stream",
	"nats:stream.subjects":    "stream_subjects",
	"nats:stream":             "stream",
	"nats:conn":               "url",
	"nats:publish_timeout":    "=relay.publish_timeout",
	"kafka:tls":               "tls_enabled",
	"redis:client":            "addr",
	"redis:tls_config":        "tls",
	"relay:source":            "=source",
	"relay:sink":              "=sink.type",
}

// LibraryError renames the field of a library's *outbox.ConfigError (a field of its Config,
// such as poll's "poll_interval" or the NATS sink's "stream.name") to the YAML path of the
// setting it comes from (poll.interval, sink.nats.stream), so that the error names what the
// user sets; the settings its reason names (backoff_base, sasl_user) get their YAML paths
// too. lib names the library ("poll", "nats"); block is the YAML block its Config is built
// from, with a trailing dot ("poll.", "sinks.events.nats."). Other errors are returned as
// they are.
func LibraryError(lib, block string, err error) error {
	var ce *outbox.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	return &outbox.ConfigError{Field: settingPath(lib, block, ce.Field), Reason: qualify(lib, block, ce.Reason)}
}

// settingPath is the YAML path of a library's field.
func settingPath(lib, block, field string) string {
	to, ok := libraryFields[lib+":"+field]
	if !ok {
		return block + field
	}
	if abs, ok := strings.CutPrefix(to, "="); ok {
		return abs
	}
	return block + to
}

var (
	// fieldName is a field name in a library's reason: snake_case with an underscore, which
	// no English word has (tls_cert_file, backoff_base).
	fieldName = regexp.MustCompile(`\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b`)
	// quotedText is a value a reason quotes with %q, which is left as it is.
	quotedText = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
)

// qualify replaces the field names in reason, outside quoted values, that are settings of
// block by their YAML paths: "sasl_user" becomes "sink.kafka.sasl_user".
func qualify(lib, block, reason string) string {
	names := func(s string) string {
		return fieldName.ReplaceAllStringFunc(s, func(name string) string {
			if path := settingPath(lib, block, name); isSetting(path) {
				return path
			}
			return name
		})
	}
	var b strings.Builder
	last := 0
	for _, loc := range quotedText.FindAllStringIndex(reason, -1) {
		b.WriteString(names(reason[last:loc[0]]))
		b.WriteString(reason[loc[0]:loc[1]])
		last = loc[1]
	}
	b.WriteString(names(reason[last:]))
	return b.String()
}

// isSetting reports whether path names a setting; one of a named sink
// (sinks.NAME.kafka.brokers) as the same setting of the sink block.
func isSetting(path string) bool {
	if rest, ok := strings.CutPrefix(path, "sinks."); ok {
		_, inBlock, _ := strings.Cut(rest, ".")
		path = "sink." + inBlock
	}
	_, ok := Lookup(path)
	return ok
}

// checkExplicit refuses the settings of block v (a struct at YAML path prefix, with the
// defaults def) that are zero where their default is not: a library reads a zero as "use
// my default", and the command's defaults are explicit (Default), so such a zero was set
// by the user and would otherwise be ignored without a word. Numbers must then be positive,
// strings set. A field tagged zero:"default" is exempt: its zero means the default.
func checkExplicit(v, def reflect.Value, prefix string) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		path := prefix + f.Tag.Get("yaml")
		fv := v.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			if err := checkExplicit(fv, def.Field(i), path+"."); err != nil {
				return err
			}
			continue
		}
		if f.Tag.Get("zero") == "default" || !fv.IsZero() || def.Field(i).IsZero() {
			continue
		}
		switch fv.Kind() {
		case reflect.Int, reflect.Int64:
			return invalid(path, "must be positive")
		case reflect.String:
			return invalid(path, "required")
		}
	}
	return nil
}

// checkBlock checks a block of settings, blk at YAML path prefix with the defaults def (both
// structs), that library lib validates: first the zeros that would silently mean the
// library's defaults (checkExplicit), then the library's validate, whose error is named by
// YAML path.
func checkBlock(lib, prefix string, blk, def any, validate func() error) error {
	if err := checkExplicit(reflect.ValueOf(blk), reflect.ValueOf(def), prefix); err != nil {
		return err
	}
	return LibraryError(lib, prefix, validate())
}
