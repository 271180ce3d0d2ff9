// Package tracing traces messages with OpenTelemetry, following the messaging semantic
// conventions, from the producer's request through the relay to the consumer's handler:
//
//   - Producer, an outbox.EnqueueHook (outbox.WriterConfig.Hooks): when the context carries
//     a span, a PRODUCER span "create {topic}" per message, whose trace context
//     (traceparent, tracestate) is stored in the message's headers and travels with it to
//     every broker.
//   - Relay, a relay hook (relay.Config.Hooks): a PRODUCER span "send {topic}" per publish
//     call, linked to the create span of each message it carried, with
//     messaging.batch.message_count and error.type.
//   - Consumer, an inbox hook (inbox.Config.Hooks): a CONSUMER span "process {topic}" per
//     delivery, the child of the message's create span (so one trace runs from the request
//     to the handler) and linked to it; the handler runs in its context.
//
// The package-level outbox.Enqueue has no configuration, hence no hooks: trace with a
// Writer. The root module does not depend on OpenTelemetry; this module does.
package tracing
