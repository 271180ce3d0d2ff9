package metrics_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/metrics"
	"github.com/outboxgo/outbox/relay"
)

// BenchmarkOnPublished is the hook's cost per publish call of 100 messages.
func BenchmarkOnPublished(b *testing.B) {
	m := metrics.NewRelay(metrics.RelayOptions{SinkName: "nats"})
	p := &relay.Published{Duration: time.Millisecond}
	now := time.Now()
	for i := range 100 {
		p.Records = append(p.Records, &outbox.Record{Seq: int64(i), Message: outbox.Message{Topic: "t"}, CreatedAt: now})
		p.Destinations = append(p.Destinations, "nats")
		p.Results = append(p.Results, nil)
	}
	b.ReportAllocs()
	for b.Loop() {
		m.OnPublished(p)
	}
}

// BenchmarkGather is one scrape's gathering of a relay's metrics (the relay, the table, the
// source, the Go runtime's), without the HTTP encoding.
func BenchmarkGather(b *testing.B) {
	reg := prometheus.NewRegistry()
	m := metrics.NewRelay(metrics.RelayOptions{SinkName: "nats"})
	recs := []outbox.Record{{Seq: 1, Message: outbox.Message{Topic: "t"}}}
	m.OnBatchFinished(recs, outbox.Outcome{Published: []int64{1}}, nil)
	m.OnPublished(&relay.Published{Records: []*outbox.Record{&recs[0]}, Destinations: []string{"nats"}, Results: []error{nil}})
	reg.MustRegister(m, metrics.NewSource("poll", func() metrics.SourceStats { return metrics.SourceStats{Connected: true} }),
		collectors.NewGoCollector())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}
