package integration_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/natsinbox"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/sink/nats"
	"github.com/outboxgo/outbox/tracing"
)

// TestTraceEndToEnd: one trace from a producer's request through the relay to a consumer's
// handler. The request enqueues in its transaction (a create span, its context in the
// headers); the relay's send span links to it; the NATS inbox adapter's process span is its
// child and the handler's own span the process span's.
func TestTraceEndToEnd(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	opts := tracing.Options{TracerProvider: tp}
	b := setup(t)
	ctx := context.Background()

	w, err := outbox.NewWriter(outbox.WriterConfig{Table: b.table, Hooks: []outbox.EnqueueHook{tracing.NewProducer(opts)}})
	if err != nil {
		t.Fatal(err)
	}
	nc := natstest.Connect(t)
	stream, prefix := natstest.Stream(t, nc)
	sk, err := nats.New(ctx, nats.Config{URL: natstest.URL(), SubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sk.Close() })
	startRelay(t, b, sk, poll.Config{}, relay.Config{Hooks: []relay.Hook{tracing.NewRelay(tracing.RelayOptions{Options: opts, System: "nats"})}})

	in, err := inbox.New(ctx, inbox.Config{Pool: b.pool, Consumer: "billing", Table: b.table + "_inbox",
		Hooks: []inbox.Hook{tracing.NewConsumer(tracing.ConsumerOptions{Options: opts, System: "nats"})}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := natsinbox.New(natsinbox.Config{Inbox: in, URL: natstest.URL(), Stream: stream, SubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan trace.SpanContext, 1)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- a.Run(runCtx, func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
			_, span := tp.Tracer("billing").Start(ctx, "charge "+m.Key)
			defer span.End()
			handled <- span.SpanContext()
			return nil
		})
	}()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("adapter: %v", err)
		}
	})

	reqCtx, req := tp.Tracer("shop").Start(ctx, "POST /orders")
	if err := pgx.BeginFunc(reqCtx, b.pool, func(tx pgx.Tx) error {
		return w.Enqueue(reqCtx, tx, outbox.Message{Topic: "orders.created", Key: "o-1", Payload: []byte(`{}`)})
	}); err != nil {
		t.Fatal(err)
	}
	req.End()
	var handler trace.SpanContext
	select {
	case handler = <-handled:
	case <-time.After(30 * time.Second):
		t.Fatal("the handler never ran")
	}
	var spans map[string]tracetest.SpanStub
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans = map[string]tracetest.SpanStub{}
		for _, s := range exp.GetSpans() {
			spans[s.Name] = s
		}
		if len(spans) >= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	create, send, process, charge := spans["create orders.created"], spans["send orders.created"], spans["process orders.created"], spans["charge o-1"]
	traceID := req.SpanContext().TraceID()
	switch {
	case create.Parent.SpanID() != req.SpanContext().SpanID() || create.SpanKind != trace.SpanKindProducer:
		t.Fatalf("create span %+v is not the request's child", create)
	case len(send.Links) != 1 || send.Links[0].SpanContext.SpanID() != create.SpanContext.SpanID() || send.SpanKind != trace.SpanKindProducer:
		t.Fatalf("send span %+v does not link to the create span", send)
	case process.SpanContext.TraceID() != traceID || process.Parent.SpanID() != create.SpanContext.SpanID() ||
		process.SpanKind != trace.SpanKindConsumer || len(process.Links) != 1:
		t.Fatalf("process span %+v is not in the request's trace under the create span", process)
	case charge.Parent.SpanID() != process.SpanContext.SpanID() || handler.TraceID() != traceID:
		t.Fatalf("the handler's span %+v is not the process span's child", charge)
	}
	for _, s := range []tracetest.SpanStub{process} {
		found := false
		for _, kv := range s.Attributes {
			found = found || (kv.Key == "outbox.inbox.result" && kv.Value.AsString() == "applied")
		}
		if !found {
			t.Errorf("process span lacks outbox.inbox.result=applied: %v", s.Attributes)
		}
	}
}
