package metrics

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/sink"
)

// DefaultLatencyBuckets are the buckets, in seconds, of the latency histograms: from a
// millisecond to ten minutes, so that an outage's backlog is measured too.
var DefaultLatencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 600}

// DefaultPublishBuckets are the buckets, in seconds, of the publish duration histogram.
var DefaultPublishBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// RelayOptions configure Relay.
type RelayOptions struct {
	// Destination names the destination of a topic, as the relay does: the sink's own name
	// for topics of a routing sink (sink.Destinations), else SinkName. Set Sink or leave
	// both zero ("sink").
	Sink     sink.Sink
	SinkName string
	// TopicLabel adds a topic label to the message counters. Off by default: topics are
	// the users' to name, and each costs a series per counter. Turn it on when the topics
	// are few and known.
	TopicLabel bool
	// LatencyBuckets and PublishBuckets override DefaultLatencyBuckets and
	// DefaultPublishBuckets.
	LatencyBuckets, PublishBuckets []float64
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

// Relay is the relay's metrics: pass it in relay.Config.Hooks (it implements
// relay.HookPublished and relay.HookBatchFinished), register it with a prometheus
// Registerer, and, once the relay exists, call Watch so that paused sinks (and operator
// pauses) are reported.
// It is safe for concurrent use.
type Relay struct {
	opts RelayOptions

	published, retried, held, dead, duplicates *prometheus.CounterVec
	latency, publish                           *prometheus.HistogramVec
	batches, finishErrors                      prometheus.Counter
	paused, operator                           *prometheus.Desc

	mu    sync.Mutex
	relay *relay.Relay
	dests map[string]bool // every destination seen: each has a paused series, 0 or 1
}

var (
	_ relay.HookPublished     = (*Relay)(nil)
	_ relay.HookBatchFinished = (*Relay)(nil)
	_ prometheus.Collector    = (*Relay)(nil)
)

// NewRelay returns the metrics of one relay.
func NewRelay(opts RelayOptions) *Relay {
	if opts.SinkName == "" {
		opts.SinkName = "sink"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	labels := []string{"sink"}
	if opts.TopicLabel {
		labels = append(labels, "topic")
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "relay", Name: name, Help: help}, labels)
	}
	m := &Relay{
		opts:       opts,
		published:  counter("published_total", "Messages their sink acknowledged (duplicates the broker recognised included)."),
		retried:    counter("retried_total", "Failed publish attempts scheduled for another attempt after a backoff."),
		held:       counter("unavailable_total", "Publish results that said the sink as a whole was unavailable (sink.ErrUnavailable): the message waits for the sink, its attempts kept."),
		dead:       counter("dead_lettered_total", "Messages moved to the dead-letter table (out of attempts, or refused for good)."),
		duplicates: counter("broker_duplicates_total", "Messages the broker acknowledged as duplicates of one it already held (a republish)."),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "relay", Name: "delivery_latency_seconds",
			Help:    "From the message's created_at (its INSERT, in the producer's transaction) to its sink's acknowledgement.",
			Buckets: bucketsOr(opts.LatencyBuckets, DefaultLatencyBuckets)}, []string{"sink"}),
		publish: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "relay", Name: "publish_duration_seconds",
			Help:    "Duration of one publish call to a sink (a wave of a batch: at most one message per key).",
			Buckets: bucketsOr(opts.PublishBuckets, DefaultPublishBuckets)}, []string{"sink"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: "relay", Name: "batches_total",
			Help: "Batches the relay finished."}),
		finishErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: "relay", Name: "finish_errors_total",
			Help: "Batches whose outcome could not be recorded (the database failed); the relay applies it when the messages come back."}),
		paused: prometheus.NewDesc(namespace+"_relay_sink_paused", "1 while the sink is paused after sink-wide failures (its messages wait, attempts kept), else 0.",
			[]string{"sink"}, nil),
		operator: prometheus.NewDesc(namespace+"_relay_operator_pauses", "Operator pauses (outbox pause, the admin API) the relay read last, by kind (topic, sink): their messages wait until resumed.",
			[]string{"kind"}, nil),
		dests: map[string]bool{},
	}
	return m
}

func bucketsOr(b, def []float64) []float64 {
	if len(b) > 0 {
		return b
	}
	return def
}

// Watch makes the metrics report r's paused sinks.
func (m *Relay) Watch(r *relay.Relay) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.relay = r
}

func (m *Relay) destination(topic string) string {
	if d, ok := m.opts.Sink.(sink.Destinations); ok {
		if name := d.Destination(topic); name != "" {
			return name
		}
	}
	return m.opts.SinkName
}

func (m *Relay) labels(dest, topic string) []string {
	if m.opts.TopicLabel {
		return []string{dest, topic}
	}
	return []string{dest}
}

func (m *Relay) seen(dest string) {
	m.mu.Lock()
	m.dests[dest] = true
	m.mu.Unlock()
}

// OnPublished implements relay.HookPublished: publish durations, acknowledged messages and
// their latency.
func (m *Relay) OnPublished(p *relay.Published) {
	now := m.opts.Now()
	var observed []string // waves are mostly of one destination: one observation per destination
	for i, rec := range p.Records {
		dest := p.Destinations[i]
		if !slices.Contains(observed, dest) {
			observed = append(observed, dest)
			m.publish.WithLabelValues(dest).Observe(p.Duration.Seconds())
			m.seen(dest)
		}
		if err := p.Results[i]; err != nil && !sink.IsDuplicate(err) {
			if sink.IsUnavailable(err) {
				m.held.WithLabelValues(m.labels(dest, rec.Topic)...).Inc()
			}
			continue
		}
		if !rec.CreatedAt.IsZero() {
			m.latency.WithLabelValues(dest).Observe(max(now.Sub(rec.CreatedAt), 0).Seconds())
		}
	}
}

// OnBatchFinished implements relay.HookBatchFinished: the outcome's counters.
func (m *Relay) OnBatchFinished(recs []outbox.Record, o outbox.Outcome, err error) {
	m.batches.Inc()
	if err != nil {
		m.finishErrors.Inc()
	}
	if len(o.Published)+len(o.Retry)+len(o.Dead) == 0 {
		return
	}
	topics := make(map[int64]string, len(recs))
	for i := range recs {
		topics[recs[i].Seq] = recs[i].Topic
	}
	inc := func(c *prometheus.CounterVec, seq int64) {
		t := topics[seq]
		c.WithLabelValues(m.labels(m.destination(t), t)...).Inc()
	}
	for _, seq := range o.Published {
		inc(m.published, seq)
	}
	for _, seq := range o.Duplicates {
		inc(m.duplicates, seq)
	}
	for _, r := range o.Retry {
		if !r.NotAttempted { // waiting for a paused sink is no failed attempt
			inc(m.retried, r.Seq)
		}
	}
	for _, d := range o.Dead {
		inc(m.dead, d.Seq)
	}
}

// Describe implements prometheus.Collector.
func (m *Relay) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
	ch <- m.paused
	ch <- m.operator
}

// Collect implements prometheus.Collector.
func (m *Relay) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
	m.mu.Lock()
	r := m.relay
	dests := make(map[string]float64, len(m.dests))
	for d := range m.dests {
		dests[d] = 0
	}
	m.mu.Unlock()
	if r == nil {
		return
	}
	if len(dests) == 0 {
		dests[m.opts.SinkName] = 0
	}
	for _, p := range r.Paused() {
		dests[p.Name] = 1
	}
	for d, v := range dests {
		ch <- prometheus.MustNewConstMetric(m.paused, prometheus.GaugeValue, v, d)
	}
	kinds := map[dialect.PauseKind]float64{dialect.PauseTopic: 0, dialect.PauseSink: 0}
	for _, p := range r.OperatorPauses() {
		kinds[p.Kind]++
	}
	for k, v := range kinds {
		ch <- prometheus.MustNewConstMetric(m.operator, prometheus.GaugeValue, v, string(k))
	}
}

func (m *Relay) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.published, m.retried, m.held, m.dead, m.duplicates, m.latency, m.publish, m.batches, m.finishErrors}
}
