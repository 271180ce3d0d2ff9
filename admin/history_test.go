package admin_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/admin"
	"github.com/outboxgo/outbox/metrics"
	"github.com/outboxgo/outbox/relay"
)

// The history turns the relay's counters into rates per interval and its latency histogram
// into the interval's quantiles, and keeps only the last Size samples.
func TestHistory(t *testing.T) {
	now := time.Now()
	m := metrics.NewRelay(metrics.RelayOptions{SinkName: "nats", Now: func() time.Time { return now }})
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	h := admin.NewHistory(reg, 3, time.Second)
	h.Sample(now)

	// 100 messages acknowledged in the next 10 s: 98 after 3 ms, 2 after 2 s.
	var recs []*outbox.Record
	for i := range 100 {
		age := 3 * time.Millisecond
		if i >= 98 {
			age = 2 * time.Second
		}
		recs = append(recs, &outbox.Record{Seq: int64(i + 1), CreatedAt: now.Add(-age)})
	}
	p := &relay.Published{Records: recs, Destinations: make([]string, 100), Results: make([]error, 100)}
	for i := range p.Destinations {
		p.Destinations[i] = "nats"
	}
	m.OnPublished(p)
	published := make([]int64, 100)
	for i := range published {
		published[i] = int64(i + 1)
	}
	flat := make([]outbox.Record, 100)
	for i := range flat {
		flat[i] = *recs[i]
	}
	m.OnBatchFinished(flat, outbox.Outcome{Published: published}, nil)
	h.Sample(now.Add(10 * time.Second))

	s := h.Samples()
	if len(s) != 2 {
		t.Fatalf("%d samples, want 2", len(s))
	}
	last := s[1]
	if last.PublishedPerSecond != 10 {
		t.Errorf("published %v/s, want 10", last.PublishedPerSecond)
	}
	if last.LatencyP50 == nil || *last.LatencyP50 <= 0.0025 || *last.LatencyP50 > 0.005 {
		t.Errorf("p50 = %v, want within the 2.5–5 ms bucket", last.LatencyP50)
	}
	if last.LatencyP99 == nil || *last.LatencyP99 <= 1 || *last.LatencyP99 > 2.5 {
		t.Errorf("p99 = %v, want within the 1–2.5 s bucket", last.LatencyP99)
	}
	h.Sample(now.Add(20 * time.Second))
	h.Sample(now.Add(30 * time.Second))
	s = h.Samples()
	if len(s) != 3 || !s[0].Time.Equal(now.Add(10*time.Second).UTC()) || s[2].LatencyP50 != nil || s[2].PublishedPerSecond != 0 {
		t.Fatalf("after 4 samples of 3: %+v", s)
	}
}
