package metrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outboxgo/outbox/dialect"
)

const namespace = "outbox"

// DefaultStatsInterval is how often Table reads the outbox's figures.
const DefaultStatsInterval = 10 * time.Second

// StatsReader is the part of a dialect.Store that Table reads.
type StatsReader interface {
	Stats(ctx context.Context) (dialect.Stats, error)
}

// TableOptions configure Table.
type TableOptions struct {
	// Store is the outbox whose figures are read. Required.
	Store StatsReader
	// Table labels the series (the outbox table's name). Required.
	Table string
	// Interval is how often the figures are read: one bounded query each time (the
	// store's Stats), never one per scrape. Default DefaultStatsInterval.
	Interval time.Duration
	// Logger receives a failed read (once per failure streak). Default slog.Default().
	Logger *slog.Logger
}

// Table reports an outbox table's backlog, oldest unpublished message, dead letters and live
// relays, read by Run at an interval and served from memory on every scrape. Register it and
// run Run. It is safe for concurrent use.
type Table struct {
	opts TableOptions

	backlog, ready, retrying, oldest, dead, relays, lastRead, readSeconds *prometheus.Desc
	readErrors                                                            prometheus.Counter

	mu      sync.Mutex
	last    dialect.Stats
	readAt  time.Time
	took    time.Duration
	lastErr error
}

var _ prometheus.Collector = (*Table)(nil)

// NewTable returns the metrics of one outbox table.
func NewTable(opts TableOptions) *Table {
	if opts.Interval <= 0 {
		opts.Interval = DefaultStatsInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_"+name, help, nil, prometheus.Labels{"table": opts.Table})
	}
	return &Table{
		opts:        opts,
		backlog:     desc("backlog_messages", "Unpublished messages in the outbox table."),
		ready:       desc("backlog_ready_messages", "Unpublished messages available now (not waiting for a retry backoff)."),
		retrying:    desc("backlog_retrying_messages", "Unpublished messages that failed at least once."),
		oldest:      desc("oldest_unpublished_age_seconds", "Age of the oldest unpublished message; 0 when none."),
		dead:        desc("dead_letters", "Messages in the dead-letter table."),
		relays:      desc("live_relays", "Relays whose membership heartbeat is current (polling relays of this table)."),
		lastRead:    desc("stats_last_read_timestamp_seconds", "When the figures above were last read (Unix time); they are stale when this stops moving."),
		readSeconds: desc("stats_read_duration_seconds", "How long the last read of the figures took."),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "stats_read_errors_total",
			Help: "Reads of the outbox's figures that failed.", ConstLabels: prometheus.Labels{"table": opts.Table}}),
	}
}

// Run reads the figures at once and then every Interval, until ctx ends.
func (t *Table) Run(ctx context.Context) {
	tick := time.NewTicker(t.opts.Interval)
	defer tick.Stop()
	for {
		_ = t.Read(ctx) // a failure is counted and logged
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Read reads the figures once; Run calls it. It returns the read's error.
func (t *Table) Read(parent context.Context) error {
	ctx, cancel := context.WithTimeout(parent, t.opts.Interval)
	defer cancel()
	start := time.Now()
	st, err := t.opts.Store.Stats(ctx)
	took := time.Since(start)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		if parent.Err() != nil {
			return err // stopping
		}
		t.readErrors.Inc()
		if t.lastErr == nil {
			t.opts.Logger.Warn("reading the outbox's figures for the metrics failed", slog.String("table", t.opts.Table), slog.Any("error", err))
		}
		t.lastErr = err
		return err
	}
	t.last, t.readAt, t.took, t.lastErr = st, start, took, nil
	return nil
}

// Last returns the figures last read, when they were read (zero before the first success),
// and the error of the last read (nil when it succeeded).
func (t *Table) Last() (dialect.Stats, time.Time, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last, t.readAt, t.lastErr
}

// Describe implements prometheus.Collector.
func (t *Table) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{t.backlog, t.ready, t.retrying, t.oldest, t.dead, t.relays, t.lastRead, t.readSeconds} {
		ch <- d
	}
	t.readErrors.Describe(ch)
}

// Collect implements prometheus.Collector. Before the first successful read it reports
// only the error counter: no made-up zeros.
func (t *Table) Collect(ch chan<- prometheus.Metric) {
	t.readErrors.Collect(ch)
	t.mu.Lock()
	st, at, took := t.last, t.readAt, t.took
	t.mu.Unlock()
	if at.IsZero() {
		return
	}
	g := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	g(t.backlog, float64(st.Pending))
	g(t.ready, float64(st.Ready))
	g(t.retrying, float64(st.Retrying))
	g(t.oldest, st.OldestPending.Seconds())
	g(t.dead, float64(st.DeadLetters))
	g(t.relays, float64(st.Relays))
	g(t.lastRead, float64(at.UnixNano())/1e9)
	g(t.readSeconds, took.Seconds())
}
