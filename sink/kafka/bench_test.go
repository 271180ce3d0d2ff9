package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/outboxgo/outbox"
	kafkasink "github.com/outboxgo/outbox/sink/kafka"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// benchBatch is a relay-like batch: 1000 messages of ~200 bytes over 1000 keys (a relay
// wave carries one message per key), with a content type and a trace header.
func benchBatch(topic string) []*outbox.Record {
	payload := []byte(`{"order_id":"9f1c2a7e-5b7d-4c1e-9a53-2f0d6f3b8e11","customer":"c-1042","total_cents":129900,"currency":"EUR","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}`)
	recs := make([]*outbox.Record, 1000)
	for i := range recs {
		r := sinktest.NewRecord(topic, fmt.Sprintf("order-%d", i), payload)
		r.Type = "com.example.order.created.v1"
		r.Headers = map[string]string{
			"content-type": "application/json",
			"traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		}
		recs[i] = r
	}
	return recs
}

func benchPublish(b *testing.B, cfg kafkasink.Config, opts ...kfake.Opt) {
	c := newCluster(b, opts...)
	topic := uniqueName("bench")
	createTopic(b, c, topic, 6, nil)
	cfg.Brokers = c.ListenAddrs()
	s := newSink(b, cfg)
	recs := benchBatch(topic)
	ctx := context.Background()
	requireOK(b, s.Publish(ctx, recs)) // metadata, producer id, connections
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

// BenchmarkPublish publishes batches of 1000 messages, one batch at a time as one relay
// lane would, to a six-partition topic of an in-process kfake cluster of three brokers
// (which shares the CPU with the client). Each iteration is one batch; msgs/s is the
// figure to compare with the relay's target.
func BenchmarkPublish(b *testing.B) {
	benchPublish(b, kafkasink.Config{})
}

// BenchmarkPublishTuning compares the batching and compression settings.
func BenchmarkPublishTuning(b *testing.B) {
	for _, linger := range []time.Duration{0, time.Millisecond, 5 * time.Millisecond} {
		b.Run(fmt.Sprintf("linger=%s", linger), func(b *testing.B) {
			benchPublish(b, kafkasink.Config{Linger: linger})
		})
	}
	for _, codec := range []string{"none", "snappy", "lz4", "zstd", "gzip"} {
		b.Run("compression="+codec, func(b *testing.B) {
			benchPublish(b, kafkasink.Config{Compression: codec})
		})
	}
	for _, max := range []int{64 << 10, 256 << 10} {
		b.Run(fmt.Sprintf("max_message_bytes=%d", max), func(b *testing.B) {
			benchPublish(b, kafkasink.Config{MaxMessageBytes: max})
		})
	}
	// The client alone: the brokers discard the records.
	b.Run("blackhole", func(b *testing.B) {
		benchPublish(b, kafkasink.Config{}, kfake.BlackholeProduce())
	})
}

// BenchmarkPublishParallel runs several batches at once, as a relay with several lanes does.
func BenchmarkPublishParallel(b *testing.B) {
	c := newCluster(b)
	topic := uniqueName("bench")
	createTopic(b, c, topic, 6, nil)
	s := newSink(b, kafkasink.Config{Brokers: c.ListenAddrs()})
	ctx := context.Background()
	requireOK(b, s.Publish(ctx, benchBatch(topic)))
	b.ReportAllocs()
	b.SetParallelism(2) // 2×GOMAXPROCS goroutines
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		recs := benchBatch(topic)
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
