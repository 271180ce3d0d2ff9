package mqtt_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	mqttsink "github.com/outboxgo/outbox/sink/mqtt"
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

// BenchmarkPublish publishes batches of 1000 messages at QoS 1 to the shared broker, one
// batch at a time, as one relay lane would. Nobody subscribes (the broker answers "no
// matching subscribers"), so the figure is the sink's. msgs/s is the figure to compare.
func BenchmarkPublish(b *testing.B) {
	s := newSink(b, mqttsink.Config{TopicPrefix: uniquePrefix()})
	benchPublish(b, s)
}

// BenchmarkPublishSubscribed is BenchmarkPublish with a QoS 1 subscriber in the same
// process, so the broker forwards every message. The subscriber (paho) competes with the
// sink for the CPU.
func BenchmarkPublishSubscribed(b *testing.B) {
	prefix := uniquePrefix()
	sub := subscribe(b, prefix, "/")
	s := newSink(b, mqttsink.Config{TopicPrefix: prefix})
	stop := drainInBackground(b, sub)
	defer stop()
	benchPublish(b, s)
}

func benchPublish(b *testing.B, s *mqttsink.Sink) {
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
	b.StopTimer()
}

// BenchmarkPublishParallel runs several batches at once, as a relay with several lanes
// does; they share the sink's connection.
func BenchmarkPublishParallel(b *testing.B) {
	s := newSink(b, mqttsink.Config{TopicPrefix: uniquePrefix()})
	ctx := context.Background()
	b.ReportAllocs()
	b.SetParallelism(2)
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

// drainInBackground empties the subscriber's queue while the benchmark runs, so that it
// does not grow without bound; the returned function stops it.
func drainInBackground(b *testing.B, sub *subscriber) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := sub.next(ctx); err != nil {
				return
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
