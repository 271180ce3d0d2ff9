package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/amqp"
	"github.com/outboxgo/outbox/sink/kafka"
	"github.com/outboxgo/outbox/sink/mqtt"
	natssink "github.com/outboxgo/outbox/sink/nats"
	redissink "github.com/outboxgo/outbox/sink/redis"
	"github.com/outboxgo/outbox/sink/route"
	"github.com/outboxgo/outbox/sink/stdout"
	"github.com/outboxgo/outbox/sink/webhook"
)

// newRelaySink builds what the relay publishes to: the sink block, or, when routes are set,
// a route.Router over the sinks the routes name (each built once, in route order). The
// stdout sinks write to out.
func newRelaySink(ctx context.Context, cfg config.Config, logger *slog.Logger, out io.Writer) (sink.Sink, error) {
	b := &sinkBuilder{publishTimeout: cfg.Relay.PublishTimeout, logger: logger, out: out}
	if len(cfg.Routes) == 0 {
		return b.build(ctx, "sink.", cfg.Sink)
	}
	built := map[string]sink.Sink{}
	closeAll := func() {
		for _, s := range built {
			_ = s.Close()
		}
	}
	routes := make([]route.Route, len(cfg.Routes))
	for i, r := range cfg.Routes {
		s, ok := built[r.Sink]
		if !ok {
			block, prefix := cfg.Sink, "sink."
			if r.Sink != config.DefaultRouteSink {
				block, prefix = cfg.Sinks[r.Sink], "sinks."+r.Sink+"."
			}
			var err error
			if s, err = b.build(ctx, prefix, block); err != nil {
				closeAll()
				return nil, err
			}
			built[r.Sink] = s
		}
		routes[i] = route.Route{Pattern: r.Topic, Name: r.Sink, Sink: s}
	}
	rt, err := route.New(routes, nil)
	if err != nil {
		closeAll()
		return nil, err
	}
	return rt, nil
}

// sinkBuilder makes sinks from sink blocks.
type sinkBuilder struct {
	publishTimeout time.Duration // relay.publish_timeout, also the NATS sink's
	logger         *slog.Logger
	out            io.Writer
	stdout         sink.Sink // shared by every stdout destination: one writer, one lock
}

// build makes the sink of block b, whose settings start with prefix ("sink." or
// "sinks.NAME."). A sink's *outbox.ConfigError is renamed to the YAML path of the setting.
func (b *sinkBuilder) build(ctx context.Context, prefix string, blk config.Sink) (sink.Sink, error) {
	logger := b.logger
	if prefix != "sink." {
		logger = logger.With(slog.String("sink_name", prefix[len("sinks."):len(prefix)-1]))
	}
	var (
		s   sink.Sink
		err error
	)
	switch blk.Type {
	case config.SinkStdout:
		if b.stdout == nil {
			b.stdout = stdout.New(stdout.Config{Writer: b.out})
		}
		return b.stdout, nil
	case config.SinkNATS:
		s, err = natssink.New(ctx, natsConfig(blk.NATS, b.publishTimeout, logger))
	case config.SinkKafka:
		s, err = kafka.New(ctx, kafkaConfig(blk.Kafka, logger))
	case config.SinkAMQP:
		s, err = amqp.New(ctx, amqpConfig(blk.AMQP, logger))
	case config.SinkMQTT:
		s, err = mqtt.New(ctx, mqttConfig(blk.MQTT, logger))
	case config.SinkRedis:
		s, err = redissink.New(ctx, redisConfig(blk.Redis, logger))
	case config.SinkWebhook:
		s, err = webhook.New(ctx, webhookConfig(blk.Webhook, logger))
	default:
		// Validate refuses other types.
		return nil, &outbox.ConfigError{Field: prefix + "type", Reason: fmt.Sprintf("unsupported sink type %q", blk.Type)}
	}
	if err != nil {
		var apiErr *jetstream.APIError
		if blk.Type == config.SinkNATS && blk.NATS.Stream != "" && errors.As(err, &apiErr) {
			// JetStream refused the stream the relay creates: the setting is at fault.
			return nil, &outbox.ConfigError{Field: prefix + "nats.stream",
				Reason: fmt.Sprintf("JetStream refused to create or update stream %q: %s", blk.NATS.Stream, apiErr.Description)}
		}
		if errors.Is(err, outbox.ErrInvalidConfig) {
			return nil, config.LibraryError(blk.Type, prefix+blk.Type+".", err)
		}
		return nil, fmt.Errorf("starting the %s sink (%s): %w", blk.Type, prefix[:len(prefix)-1], err)
	}
	return s, nil
}

// The functions below are the sink packages' Configs of the blocks (config's SinkConfig),
// with the logger.

func natsConfig(n config.NATS, publishTimeout time.Duration, logger *slog.Logger) natssink.Config {
	c := n.SinkConfig(publishTimeout)
	c.Logger = logger
	return c
}

func kafkaConfig(k config.Kafka, logger *slog.Logger) kafka.Config {
	c := k.SinkConfig()
	c.Logger = logger
	return c
}

func amqpConfig(a config.AMQP, logger *slog.Logger) amqp.Config {
	c := a.SinkConfig()
	c.Logger = logger
	return c
}

func mqttConfig(m config.MQTT, logger *slog.Logger) mqtt.Config {
	c := m.SinkConfig()
	c.Logger = logger
	return c
}

func redisConfig(r config.Redis, logger *slog.Logger) redissink.Config {
	c := r.SinkConfig()
	c.Logger = logger
	return c
}

func webhookConfig(w config.Webhook, logger *slog.Logger) webhook.Config {
	c := w.SinkConfig()
	c.Logger = logger
	return c
}

// sinkSummary names what the relay publishes to, for its start log line: the sink type, or
// each routed sink as name(type).
func sinkSummary(cfg config.Config) string {
	if len(cfg.Routes) == 0 {
		return cfg.Sink.Type
	}
	s := ""
	for i, name := range routedSinks(cfg) {
		typ := cfg.Sink.Type
		if name != config.DefaultRouteSink {
			typ = cfg.Sinks[name].Type
		}
		if i > 0 {
			s += ","
		}
		s += name + "(" + typ + ")"
	}
	return s
}

// routedSinks returns the sink names the routes use, each once, in route order.
func routedSinks(cfg config.Config) []string {
	var names []string
	seen := map[string]bool{}
	for _, r := range cfg.Routes {
		if !seen[r.Sink] {
			seen[r.Sink] = true
			names = append(names, r.Sink)
		}
	}
	return names
}
