package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outboxgo/outbox/inbox"
)

// Inbox is a consumer's metrics: pass it in inbox.Config.Hooks (it implements
// inbox.HookDelivered) and register it. The consumer label is inbox.Config.Consumer: one
// series per consumer and outcome. It is safe for concurrent use.
type Inbox struct {
	now       func() time.Time
	processed *prometheus.CounterVec
	errors    *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	duration  *prometheus.HistogramVec
}

var (
	_ inbox.HookDelivered  = (*Inbox)(nil)
	_ prometheus.Collector = (*Inbox)(nil)
)

// InboxOptions configure Inbox.
type InboxOptions struct {
	// LatencyBuckets overrides DefaultLatencyBuckets.
	LatencyBuckets []float64
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
}

// NewInbox returns the metrics of the inboxes that have it in their hooks.
func NewInbox(opts InboxOptions) *Inbox {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Inbox{
		now: opts.Now,
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "inbox", Name: "processed_total",
			Help: "Deliveries by outcome: applied (the handler's effects committed), duplicate (already processed: id, or a later position of its key), failed (the handler failed; redelivered after a backoff), dead (moved to the inbox's dead letters)."},
			[]string{"consumer", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: "inbox", Name: "errors_total",
			Help: "Deliveries the inbox could not handle (the database failed, the commit's result unknown): neither acknowledged nor counted, redelivered."},
			[]string{"consumer"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "inbox", Name: "latency_seconds",
			Help:    "From the event's time (the outbox's created_at) to its effects' commit, for applied messages.",
			Buckets: bucketsOr(opts.LatencyBuckets, DefaultLatencyBuckets)}, []string{"consumer"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: "inbox", Name: "delivery_duration_seconds",
			Help:    "Duration of one Deliver call (or batch call), handler and commit included.",
			Buckets: DefaultPublishBuckets}, []string{"consumer"}),
	}
}

// OnDelivered implements inbox.HookDelivered.
func (m *Inbox) OnDelivered(consumer string, d *inbox.Delivery, o *inbox.Outcome, err error, took time.Duration) {
	m.duration.WithLabelValues(consumer).Observe(took.Seconds())
	if err != nil {
		m.errors.WithLabelValues(consumer).Inc()
		return
	}
	var outcome string
	switch {
	case o.Retry:
		outcome = "failed"
	case o.Result == inbox.Applied:
		outcome = "applied"
		if t := d.Message.Time; !t.IsZero() {
			m.latency.WithLabelValues(consumer).Observe(max(m.now().Sub(t), 0).Seconds())
		}
	case o.Result == inbox.Duplicate, o.Result == inbox.Stale:
		outcome = "duplicate"
	case o.Result == inbox.DeadLettered:
		outcome = "dead"
	default:
		return
	}
	m.processed.WithLabelValues(consumer, outcome).Inc()
}

// Describe implements prometheus.Collector.
func (m *Inbox) Describe(ch chan<- *prometheus.Desc) {
	m.processed.Describe(ch)
	m.errors.Describe(ch)
	m.latency.Describe(ch)
	m.duration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Inbox) Collect(ch chan<- prometheus.Metric) {
	m.processed.Collect(ch)
	m.errors.Collect(ch)
	m.latency.Collect(ch)
	m.duration.Collect(ch)
}
