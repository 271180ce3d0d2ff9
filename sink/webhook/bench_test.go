package webhook_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink/sinktest"
	"github.com/outboxgo/outbox/sink/webhook"
)

// benchBatch is a relay-like batch: 1000 messages of ~200 bytes over 1000 keys, with a
// content type and a trace header.
func benchBatch() []*outbox.Record {
	payload := []byte(`{"order_id":"9f1c2a7e-5b7d-4c1e-9a53-2f0d6f3b8e11","customer":"c-1042","total_cents":129900,"currency":"EUR","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}`)
	recs := make([]*outbox.Record, 1000)
	for i := range recs {
		r := sinktest.NewRecord("orders.created", fmt.Sprintf("order-%d", i), payload)
		r.Type = "com.example.order.created.v1"
		r.Headers = map[string]string{
			"content-type": "application/json",
			"traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		}
		recs[i] = r
	}
	return recs
}

// BenchmarkPublish posts batches of 1000 signed messages to a loopback httptest server that
// reads the body and answers 204, one batch at a time with the default concurrency. Client
// and server share the machine's CPUs, so this is a floor for a remote endpoint with a fast
// answer; a real endpoint's latency divides it by about (latency / loopback round trip).
func BenchmarkPublish(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(srv.Close)
	s := newSink(b, webhook.Config{URL: srv.URL + "/hook", Secrets: []string{testSecret}})
	recs := benchBatch()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for j, err := range s.Publish(ctx, recs) {
			if err != nil {
				b.Fatalf("message %d: %v", j, err)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/time.Since(start).Seconds(), "msgs/s")
}
