package admin

import (
	"context"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// DefaultHistorySize and DefaultHistoryInterval: an hour of samples, one every 5 seconds.
const (
	DefaultHistorySize     = 720
	DefaultHistoryInterval = 5 * time.Second
)

// Sample is one point of the history: the outbox's figures, and the relay's work in the
// interval that ended at Time.
type Sample struct {
	Time          time.Time `json:"time"`
	Backlog       float64   `json:"backlog"`
	OldestSeconds float64   `json:"oldest_unpublished_seconds"`
	DeadLetters   float64   `json:"dead_letters"`
	// PublishedPerSecond, RetriedPerSecond and DeadLetteredPerSecond are rates over the
	// interval (every sink together).
	PublishedPerSecond    float64 `json:"published_per_second"`
	RetriedPerSecond      float64 `json:"retried_per_second"`
	DeadLetteredPerSecond float64 `json:"dead_lettered_per_second"`
	// LatencyP50 and LatencyP99 are the commit → acknowledged latency quantiles, in seconds,
	// of the messages acknowledged in the interval (interpolated within the histogram's
	// buckets); absent when none was.
	LatencyP50 *float64 `json:"latency_p50_seconds,omitempty"`
	LatencyP99 *float64 `json:"latency_p99_seconds,omitempty"`
}

// History keeps the last Size samples of a relay's metrics in memory, read from its
// Gatherer every Interval: the dashboard's charts, without Prometheus. It is safe for
// concurrent use.
type History struct {
	g        prometheus.Gatherer
	size     int
	interval time.Duration

	mu      sync.Mutex
	samples []Sample // ring, oldest first once full
	next    int
	prev    counters
	prevAt  time.Time
}

// counters are the cumulative figures a sample is the difference of.
type counters struct {
	published, retried, dead float64
	buckets                  map[float64]float64 // upper bound → cumulative count
	count                    float64
}

// NewHistory returns a History of g; size and interval 0 take the defaults.
func NewHistory(g prometheus.Gatherer, size int, interval time.Duration) *History {
	if size <= 0 {
		size = DefaultHistorySize
	}
	if interval <= 0 {
		interval = DefaultHistoryInterval
	}
	return &History{g: g, size: size, interval: interval}
}

// Run samples every Interval until ctx ends.
func (h *History) Run(ctx context.Context) {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	h.Sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			h.Sample(now)
		}
	}
}

// Sample takes one sample now (Run calls it); the first only sets the baseline of the rates.
func (h *History) Sample(now time.Time) {
	mfs, err := h.g.Gather()
	if err != nil && len(mfs) == 0 {
		return
	}
	s := Sample{Time: now.UTC()}
	c := counters{buckets: map[float64]float64{}}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "outbox_backlog_messages":
			s.Backlog = maxGauge(mf)
		case "outbox_oldest_unpublished_age_seconds":
			s.OldestSeconds = maxGauge(mf)
		case "outbox_dead_letters":
			s.DeadLetters = maxGauge(mf)
		case "outbox_relay_published_total":
			c.published = sumCounter(mf)
		case "outbox_relay_retried_total":
			c.retried = sumCounter(mf)
		case "outbox_relay_dead_lettered_total":
			c.dead = sumCounter(mf)
		case "outbox_relay_delivery_latency_seconds":
			for _, m := range mf.GetMetric() {
				hg := m.GetHistogram()
				c.count += float64(hg.GetSampleCount())
				for _, b := range hg.GetBucket() {
					c.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
				}
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.prevAt.IsZero() {
		dt := now.Sub(h.prevAt).Seconds()
		if dt > 0 {
			s.PublishedPerSecond = max(c.published-h.prev.published, 0) / dt
			s.RetriedPerSecond = max(c.retried-h.prev.retried, 0) / dt
			s.DeadLetteredPerSecond = max(c.dead-h.prev.dead, 0) / dt
		}
		s.LatencyP50, s.LatencyP99 = quantiles(h.prev, c)
	}
	h.prev, h.prevAt = c, now
	if len(h.samples) < h.size {
		h.samples = append(h.samples, s)
	} else {
		h.samples[h.next] = s
	}
	h.next = (h.next + 1) % h.size
}

// Samples returns the samples, oldest first.
func (h *History) Samples() []Sample {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.samples) < h.size {
		return append([]Sample(nil), h.samples...)
	}
	return append(append([]Sample(nil), h.samples[h.next:]...), h.samples[:h.next]...)
}

func maxGauge(mf *dto.MetricFamily) float64 {
	v := 0.0
	for _, m := range mf.GetMetric() {
		v = max(v, m.GetGauge().GetValue())
	}
	return v
}

func sumCounter(mf *dto.MetricFamily) float64 {
	v := 0.0
	for _, m := range mf.GetMetric() {
		v += m.GetCounter().GetValue()
	}
	return v
}

// quantiles returns the p50 and p99 of the observations between two cumulative histograms,
// interpolated linearly within a bucket (as PromQL's histogram_quantile does).
func quantiles(prev, cur counters) (*float64, *float64) {
	n := cur.count - prev.count
	if n <= 0 {
		return nil, nil
	}
	bounds := make([]float64, 0, len(cur.buckets))
	for b := range cur.buckets {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	q := func(p float64) *float64 {
		rank := p * n
		lower, below := 0.0, 0.0
		for _, b := range bounds {
			in := cur.buckets[b] - prev.buckets[b]
			if in >= rank {
				v := b
				if in > below && !math.IsInf(b, 1) {
					v = lower + (b-lower)*(rank-below)/(in-below)
				} else if math.IsInf(b, 1) {
					v = lower
				}
				return &v
			}
			lower, below = b, in
		}
		v := lower // above every bucket: the largest finite bound
		return &v
	}
	return q(0.5), q(0.99)
}
