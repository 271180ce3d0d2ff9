package amqp_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	amqpsink "github.com/outboxgo/outbox/sink/amqp"
	"github.com/outboxgo/outbox/sink/sinktest"
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

// benchSink declares a durable queue, deleted when the benchmark ends, and returns a sink
// routing orders.created to it through the default exchange: persistent messages into a
// durable queue, so every confirm waits for the broker's disk.
func benchSink(b *testing.B) *amqpsink.Sink {
	conn := dial(b)
	ch := channel(b, conn)
	q := uniqueName("bench")
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = ch.QueueDelete(q, false, false, false) })
	return newSink(b, amqpsink.Config{RoutingKeys: map[string]string{"orders.created": q}})
}

// BenchmarkPublish publishes batches of 1000 messages, one batch at a time, as one relay
// lane would. Each iteration is one batch; msgs/s is the figure to compare.
func BenchmarkPublish(b *testing.B) {
	s := benchSink(b)
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

// BenchmarkPublishParallel runs several batches at once, as a relay with several lanes does.
func BenchmarkPublishParallel(b *testing.B) {
	s := benchSink(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(2) // 2×GOMAXPROCS goroutines
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		recs := benchBatch()
		for pb.Next() {
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
