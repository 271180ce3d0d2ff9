package nats_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
	natssink "github.com/outboxgo/outbox/sink/nats"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// benchBatch is a relay-like batch: 1000 messages of ~200 bytes over 100 keys, with a
// content type and a trace header.
func benchBatch() []*outbox.Record {
	payload := []byte(`{"order_id":"9f1c2a7e-5b7d-4c1e-9a53-2f0d6f3b8e11","customer":"c-1042","total_cents":129900,"currency":"EUR","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}`)
	recs := make([]*outbox.Record, 1000)
	for i := range recs {
		r := sinktest.NewRecord("orders.created", fmt.Sprintf("order-%d", i%100), payload)
		r.Type = "com.example.order.created.v1"
		r.Headers = map[string]string{
			"content-type": "application/json",
			"traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		}
		recs[i] = r
	}
	return recs
}

// BenchmarkPublish publishes batches of 1000 messages to a file-backed stream on the shared
// server, one batch at a time, as one relay lane would. Each iteration is one batch; msgs/s
// is the figure to compare with the relay's target.
func BenchmarkPublish(b *testing.B) {
	nc := natstest.Connect(b)
	_, prefix := natstest.Stream(b, nc)
	s := newSink(b, natssink.Config{URL: natstest.URL(), SubjectPrefix: prefix, Logger: logtest.New(b)})
	recs := benchBatch()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		// Fresh ids so JetStream stores every message rather than deduping.
		for _, r := range recs {
			r.ID = outbox.NewID()
		}
		for j, err := range s.Publish(ctx, recs) {
			if err != nil {
				b.Fatalf("message %d: %v", j, err)
			}
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkPublishParallel runs several batches at once, as a relay with several lanes does.
func BenchmarkPublishParallel(b *testing.B) {
	nc := natstest.Connect(b)
	_, prefix := natstest.Stream(b, nc)
	s := newSink(b, natssink.Config{URL: natstest.URL(), SubjectPrefix: prefix, Logger: logtest.New(b)})
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(2) // 2×GOMAXPROCS goroutines
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		recs := benchBatch()
		for pb.Next() {
			for _, r := range recs {
				r.ID = outbox.NewID()
			}
			for j, err := range s.Publish(ctx, recs) {
				if err != nil {
					b.Errorf("message %d: %v", j, err)
					return
				}
			}
		}
	})
	b.ReportMetric(float64(b.N*1000)/time.Since(start).Seconds(), "msgs/s")
}
