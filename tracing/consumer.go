package tracing

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxgo/outbox/inbox"
)

// Consumer is an inbox hook (inbox.Config.Hooks, inbox.HookDeliver): a CONSUMER span
// "process {topic}" per delivery, the parent of the handler's own spans. The span is a child
// of the message's create span (the trace context in its headers), so that one trace runs
// from the producer's request through the relay to the handler, and links to it too. It
// records the inbox's result (applied, duplicate, stale, dead_lettered) and a failed
// handler's error.
type Consumer struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	system string
}

var _ inbox.HookDeliver = (*Consumer)(nil)

// ConsumerOptions configure Consumer.
type ConsumerOptions struct {
	Options
	// System is messaging.system: the broker the consumer reads ("kafka", "nats", ...).
	// Default "outbox".
	System string
}

// NewConsumer returns the consumer's hook.
func NewConsumer(opts ConsumerOptions) *Consumer {
	sys := opts.System
	if sys == "" {
		sys = "outbox"
	}
	return &Consumer{tracer: opts.tracer(), prop: opts.propagator(), system: sys}
}

const attrResult = attribute.Key("outbox.inbox.result")

// BeforeDeliver implements inbox.HookDeliver.
func (c *Consumer) BeforeDeliver(ctx context.Context, consumer string, d *inbox.Delivery) (context.Context, func(*inbox.Outcome, error)) {
	m := &d.Message
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		attrSystem.String(c.system), attrDest.String(m.Topic), attrMessageID.String(m.ID),
		attrOpType.String("process"), attrOpName.String("process"),
		attribute.Key("messaging.consumer.group.name").String(consumer))}
	parent := ctx
	if len(m.Headers) > 0 {
		pctx := c.prop.Extract(ctx, headers(m.Headers))
		if sc := trace.SpanContextFromContext(pctx); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
			if !trace.SpanContextFromContext(ctx).IsValid() {
				parent = pctx // no span of the consumer's own: continue the producer's trace
			}
		}
	}
	sctx, span := c.tracer.Start(parent, "process "+m.Topic, opts...)
	return sctx, func(o *inbox.Outcome, err error) {
		switch {
		case err != nil:
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(attrErrorType.String("inbox"))
		case o.Retry:
			span.RecordError(o.Err)
			span.SetStatus(codes.Error, fmt.Sprint(o.Err))
			span.SetAttributes(attrErrorType.String("handler"), attrResult.String("retry"))
		default:
			span.SetAttributes(attrResult.String(o.Result.String()))
		}
		span.End()
	}
}
