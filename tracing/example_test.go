package tracing_test

import (
	"fmt"
	"log"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/tracing"
)

// The three hooks, on one tracer provider.
func Example() {
	tp := sdktrace.NewTracerProvider() // with an exporter: sdktrace.WithBatcher(otlp...)
	opts := tracing.Options{TracerProvider: tp}
	w, err := outbox.NewWriter(outbox.WriterConfig{Hooks: []outbox.EnqueueHook{tracing.NewProducer(opts)}})
	if err != nil {
		log.Fatal(err)
	}
	relayHooks := []relay.Hook{tracing.NewRelay(tracing.RelayOptions{Options: opts, System: "kafka"})}
	consumerHook := tracing.NewConsumer(tracing.ConsumerOptions{Options: opts, System: "kafka"}) // in inbox.Config.Hooks
	fmt.Println(w != nil, len(relayHooks), consumerHook != nil)
	// Output: true 1 true
}
