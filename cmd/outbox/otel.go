package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/tracing"
)

// traceShutdownTimeout bounds the flush of the spans still queued when the relay stops.
const traceShutdownTimeout = 5 * time.Second

// newTracerProvider returns the tracer provider of tracing.*, exporting over OTLP with a
// batch span processor, or nil when tracing.endpoint is empty. Export failures are logged
// on logger as warnings (the command's logger redacts them), not handed to OpenTelemetry's process-wide error
// handler. Shut it down with shutdownTracerProvider.
func newTracerProvider(ctx context.Context, cfg config.Tracing, version string, logger *slog.Logger) (*sdktrace.TracerProvider, error) {
	if cfg.Endpoint == "" {
		return nil, nil
	}
	exp, err := newOTLPExporter(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", cfg.ServiceName),
		attribute.String("service.version", version),
	)
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(loggingExporter{SpanExporter: exp, logger: logger}),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	), nil
}

// newOTLPExporter returns the OTLP exporter of tracing.protocol to tracing.endpoint.
//
// The exporters read the standard OTEL_EXPORTER_OTLP_* variables first and apply the options
// after them: the endpoint is therefore always given as a whole URL (WithEndpointURL), whose
// scheme sets TLS, so that no variable can move the spans, or the headers with them, to
// another address or to plain text; the headers are given only when tracing.headers has some
// (an empty WithHeaders would also wipe OTEL_EXPORTER_OTLP_HEADERS).
func newOTLPExporter(ctx context.Context, cfg config.Tracing) (sdktrace.SpanExporter, error) {
	e, err := cfg.ParseEndpoint()
	if err != nil {
		return nil, &outbox.ConfigError{Field: "tracing.endpoint", Reason: err.Error()}
	}
	headers := make(map[string]string, len(cfg.Headers))
	for k, v := range cfg.Headers {
		headers[k] = string(v)
	}
	scheme := "https"
	if e.Insecure {
		scheme = "http"
	}
	if cfg.Protocol == config.ProtocolGRPC {
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpointURL(scheme + "://" + e.HostPort)}
		if len(headers) > 0 {
			opts = append(opts, otlptracegrpc.WithHeaders(headers))
		}
		exp, err := otlptracegrpc.New(ctx, opts...)
		if err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
		return exp, nil
	}
	path := e.Path
	if path == "" {
		path = "/v1/traces"
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(scheme + "://" + e.HostPort + path)}
	if len(headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(headers))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	return exp, nil
}

// loggingExporter logs the exporter's failures and reports success to the batch span
// processor, which would otherwise hand them to otel.Handle, the process-wide error handler
// (printing to stderr with the standard logger). The exporter has retried by then; the
// batch is dropped either way.
type loggingExporter struct {
	sdktrace.SpanExporter
	logger *slog.Logger
}

func (e loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if err := e.SpanExporter.ExportSpans(ctx, spans); err != nil {
		e.logger.Warn("tracing: exporting spans failed; they are dropped", slog.Int("spans", len(spans)), slog.Any("error", err))
	}
	return nil
}

// shutdownTracerProvider flushes the queued spans, within traceShutdownTimeout, and stops
// tp (nil: nothing to do).
func shutdownTracerProvider(tp *sdktrace.TracerProvider, logger *slog.Logger) {
	if tp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), traceShutdownTimeout)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			logger.Warn("tracing: spans not flushed within the shutdown timeout; they are dropped", slog.Duration("timeout", traceShutdownTimeout))
			return
		}
		logger.Warn("tracing: shutting down the exporter", slog.Any("error", err))
	}
}

// relayTracingHook returns the relay's tracing hook on tp, its messaging.system the sink's
// broker (outbox with routes, stdout and webhooks).
func relayTracingHook(cfg config.Config, tp *sdktrace.TracerProvider) *tracing.Relay {
	system := ""
	if len(cfg.Routes) == 0 {
		switch cfg.Sink.Type {
		case config.SinkAMQP:
			system = "rabbitmq"
		case config.SinkKafka, config.SinkNATS, config.SinkMQTT, config.SinkRedis:
			system = cfg.Sink.Type
		}
	}
	return tracing.NewRelay(tracing.RelayOptions{Options: tracing.Options{TracerProvider: tp}, System: system})
}

// buildVersion is the module version of the running binary, for service.version.
func buildVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" {
		return info.Main.Version
	}
	return "(devel)"
}
