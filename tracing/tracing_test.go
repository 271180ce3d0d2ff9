package tracing_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/tracing"
)

func provider() (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	exp := tracetest.NewInMemoryExporter()
	return sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp)), exp
}

func attr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// Enqueue inside a request's span: a create span per message, children of the request's,
// their trace context in the stored headers, the caller's header map untouched; without a
// span in the context, nothing.
func TestProducer(t *testing.T) {
	t.Parallel()
	tp, exp := provider()
	pool, schema := pgtest.Schema(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE `+schema+`.outbox (id bigint GENERATED ALWAYS AS IDENTITY, message_id uuid, topic text, key text, type text, payload bytea, headers jsonb)`); err != nil {
		t.Fatal(err)
	}
	w, err := outbox.NewWriter(outbox.WriterConfig{Table: schema + ".outbox", Hooks: []outbox.EnqueueHook{tracing.NewProducer(tracing.Options{TracerProvider: tp})}})
	if err != nil {
		t.Fatal(err)
	}
	mine := map[string]string{"tenant": "t-1"}
	msgs := []outbox.Message{{Topic: "orders.created", Key: "o-1", Headers: mine}, {Topic: "orders.paid", Key: "o-1"}}

	reqCtx, req := tp.Tracer("test").Start(ctx, "POST /orders")
	tx, err := pool.Begin(reqCtx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Enqueue(reqCtx, tx, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	req.End()
	if len(mine) != 1 {
		t.Fatalf("the caller's headers were changed: %v", mine)
	}
	spans := exp.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 2 create spans and the request", len(spans))
	}
	for i, s := range spans[:2] {
		if s.Name != "create "+msgs[i].Topic || s.SpanKind != trace.SpanKindProducer || s.Parent.SpanID() != req.SpanContext().SpanID() ||
			attr(s, "messaging.message.id") != msgs[i].ID.String() || attr(s, "messaging.destination.name") != msgs[i].Topic {
			t.Fatalf("span %d: %+v", i, s)
		}
	}
	var stored []map[string]string
	rows, err := pool.Query(ctx, `SELECT headers FROM `+schema+`.outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h map[string]string
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, h)
	}
	if len(stored) != 2 || stored[0]["tenant"] != "t-1" || stored[0]["traceparent"] == "" ||
		stored[0]["traceparent"][36:52] != spans[0].SpanContext.SpanID().String() {
		t.Fatalf("stored headers = %v", stored)
	}

	exp.Reset()
	tx, _ = pool.Begin(ctx)
	defer func() { _ = tx.Rollback(ctx) }()
	if err := w.Enqueue(ctx, tx, outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans without a span in the context, want 0", n)
	}
}

// A publish call's send span: timed as the call, linked to each message's create span,
// with the batch size and the failure's type.
func TestRelay(t *testing.T) {
	t.Parallel()
	tp, exp := provider()
	h := tracing.NewRelay(tracing.RelayOptions{Options: tracing.Options{TracerProvider: tp}, System: "nats"})
	_, create := tp.Tracer("test").Start(context.Background(), "create orders")
	carrier := map[string]string{"traceparent": "00-" + create.SpanContext().TraceID().String() + "-" + create.SpanContext().SpanID().String() + "-01"}
	recs := []*outbox.Record{
		{Seq: 1, Message: outbox.Message{ID: outbox.NewID(), Topic: "orders", Headers: carrier}},
		{Seq: 2, Message: outbox.Message{ID: outbox.NewID(), Topic: "orders"}},
	}
	start := time.Now().Add(-time.Second)
	h.OnPublished(&relay.Published{Records: recs, Destinations: []string{"nats", "nats"}, Results: []error{nil, sink.Permanent(errors.New("too large"))},
		Start: start, Duration: 250 * time.Millisecond})
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	s := spans[0]
	if s.Name != "send orders" || s.SpanKind != trace.SpanKindProducer || !s.StartTime.Equal(start) || s.EndTime.Sub(s.StartTime) != 250*time.Millisecond ||
		attr(s, "messaging.batch.message_count") != "2" || attr(s, "messaging.system") != "nats" || attr(s, "error.type") != "permanent" ||
		s.Status.Code != codes.Error {
		t.Fatalf("send span: %+v", s)
	}
	if len(s.Links) != 1 || s.Links[0].SpanContext.SpanID() != create.SpanContext().SpanID() {
		t.Fatalf("links = %+v, want the create span's", s.Links)
	}
}
