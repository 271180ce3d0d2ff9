package tracing

import (
	"context"
	"fmt"
	"maps"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/sink"
)

// ScopeName is the instrumentation scope of the spans.
const ScopeName = "github.com/outboxgo/outbox/tracing"

// Attribute keys of the OpenTelemetry messaging semantic conventions.
const (
	attrSystem     = attribute.Key("messaging.system")
	attrDest       = attribute.Key("messaging.destination.name")
	attrMessageID  = attribute.Key("messaging.message.id")
	attrOpType     = attribute.Key("messaging.operation.type")
	attrOpName     = attribute.Key("messaging.operation.name")
	attrBatchCount = attribute.Key("messaging.batch.message_count")
	attrErrorType  = attribute.Key("error.type")
)

// Options configure the hooks. The zero value uses the global TracerProvider and the W3C
// trace context propagator.
type Options struct {
	// TracerProvider makes the tracer. Default otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// Propagator writes and reads the trace context in message headers. Default
	// propagation.TraceContext{} (traceparent, tracestate).
	Propagator propagation.TextMapPropagator
}

func (o Options) tracer() trace.Tracer {
	tp := o.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(ScopeName)
}

func (o Options) propagator() propagation.TextMapPropagator {
	if o.Propagator == nil {
		return propagation.TraceContext{}
	}
	return o.Propagator
}

// headers adapts a message's headers to propagation.TextMapCarrier.
type headers map[string]string

func (h headers) Get(k string) string { return h[k] }
func (h headers) Set(k, v string)     { h[k] = v }
func (h headers) Keys() []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}

// Producer is an outbox.EnqueueHook (WriterConfig.Hooks): when the context carries a span,
// it starts a PRODUCER span "create {topic}" per message, a child of it, and writes its
// trace context into the message's headers (traceparent, tracestate), so that the relay's
// and the consumers' spans link to it. Without a span in the context it does nothing.
type Producer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

var _ outbox.EnqueueHook = (*Producer)(nil)

// NewProducer returns the producer's hook.
func NewProducer(opts Options) *Producer {
	return &Producer{tracer: opts.tracer(), prop: opts.propagator()}
}

// BeforeEnqueue implements outbox.EnqueueHook.
func (p *Producer) BeforeEnqueue(ctx context.Context, msgs []outbox.Message) func(error) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	spans := make([]trace.Span, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		sctx, span := p.tracer.Start(ctx, "create "+m.Topic, trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(attrSystem.String("outbox"), attrDest.String(m.Topic), attrMessageID.String(m.ID.String()),
				attrOpType.String("create"), attrOpName.String("create")))
		h := make(headers, len(m.Headers)+2)
		maps.Copy(h, m.Headers)
		p.prop.Inject(sctx, h)
		m.Headers = h
		spans[i] = span
	}
	return func(err error) {
		for _, s := range spans {
			if err != nil {
				s.RecordError(err)
				s.SetStatus(codes.Error, err.Error())
				s.SetAttributes(attrErrorType.String(fmt.Sprintf("%T", err)))
			}
			s.End()
		}
	}
}

// RelayOptions configure Relay.
type RelayOptions struct {
	Options
	// System is messaging.system of the send spans: the sink's broker ("kafka", "nats",
	// "rabbitmq", ...). Default "outbox".
	System string
}

// Relay is a relay hook (relay.Config.Hooks, relay.HookPublished): a PRODUCER span
// "send {topic}" per publish call of the relay (a wave of a batch), timed as the call was,
// linked to the create span of each message it carried (their headers' trace context), with
// the batch's size and, when messages failed, the error's type.
type Relay struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	system string
}

var _ relay.HookPublished = (*Relay)(nil)

// NewRelay returns the relay's hook.
func NewRelay(opts RelayOptions) *Relay {
	sys := opts.System
	if sys == "" {
		sys = "outbox"
	}
	return &Relay{tracer: opts.tracer(), prop: opts.propagator(), system: sys}
}

// OnPublished implements relay.HookPublished.
func (r *Relay) OnPublished(p *relay.Published) {
	if len(p.Records) == 0 {
		return
	}
	topic := p.Records[0].Topic
	for _, rec := range p.Records[1:] {
		if rec.Topic != topic {
			topic = ""
			break
		}
	}
	name := "send"
	if topic != "" {
		name += " " + topic
	}
	links := make([]trace.Link, 0, len(p.Records))
	for _, rec := range p.Records {
		if len(rec.Headers) == 0 {
			continue
		}
		if sc := trace.SpanContextFromContext(r.prop.Extract(context.Background(), headers(rec.Headers))); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attrMessageID.String(rec.ID.String())}})
		}
	}
	attrs := []attribute.KeyValue{attrSystem.String(r.system), attrOpType.String("send"), attrOpName.String("send"),
		attrBatchCount.Int(len(p.Records))}
	if topic != "" {
		attrs = append(attrs, attrDest.String(topic))
	}
	if len(p.Records) == 1 {
		attrs = append(attrs, attrMessageID.String(p.Records[0].ID.String()))
	}
	_, span := r.tracer.Start(context.Background(), name, trace.WithSpanKind(trace.SpanKindProducer), trace.WithTimestamp(p.Start),
		trace.WithLinks(links...), trace.WithAttributes(attrs...))
	failed := 0
	var first error
	for _, err := range p.Results {
		if err != nil && !sink.IsDuplicate(err) {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	if failed > 0 {
		span.SetStatus(codes.Error, fmt.Sprintf("%d of %d messages failed: %v", failed, len(p.Records), first))
		span.SetAttributes(attrErrorType.String(errorType(first)))
	}
	span.End(trace.WithTimestamp(p.Start.Add(max(p.Duration, time.Duration(0)))))
}

// errorType names the kind of a sink's error for error.type: unavailable, permanent or
// retryable.
func errorType(err error) string {
	switch {
	case sink.IsUnavailable(err):
		return "unavailable"
	case sink.IsPermanent(err):
		return "permanent"
	}
	return "retryable"
}
