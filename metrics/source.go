package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outboxgo/outbox/relay/poll"
)

// SourceStats is what a relay's source reports to Source. Fields a source does not have stay
// at their zero value and, where zero would mislead, are marked unknown.
type SourceStats struct {
	// Connected: the polling source's last heartbeat succeeded; a log source (wal, binlog)
	// holds its slot or lock and streams.
	Connected bool
	// Standby: a log source waits while another relay reads (a hot standby).
	Standby bool
	// Claims, EmptyClaims and ClaimErrors count the polling source's claims.
	Claims, EmptyClaims, ClaimErrors uint64
	// OwnedPartitions of Partitions: the slices of the key space this polling relay claims.
	OwnedPartitions, Partitions int
	// Pending: messages a log source read and has not finished.
	Pending int
	// Reconnects: a log source's sessions that ended in an error.
	Reconnects int
	// RetainedBytes is the WAL the slot holds back (wal); HasRetained says it is known.
	RetainedBytes int64
	HasRetained   bool
	// LagSeconds and LagBytes are how far the binlog source's reading is behind the
	// server's binary log (binlog.Source.Lag); HasLag says they are known.
	LagSeconds float64
	LagBytes   int64
	HasLag     bool
}

// Source reports a relay source's state, read from a function at every scrape (it must be
// cheap: the sources' Stats methods are; read anything that costs a query, such as the
// slot's retained WAL or the binlog's lag, at an interval of your own and return the last
// value).
type Source struct {
	kind  string
	stats func() SourceStats

	connected, standby, claims, owned, parts, pending, reconnects, retained, lagSeconds, lagBytes *prometheus.Desc
}

var _ prometheus.Collector = (*Source)(nil)

// NewSource returns the metrics of a source of kind (poll, wal or binlog).
func NewSource(kind string, stats func() SourceStats) *Source {
	l := prometheus.Labels{"source": kind}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_"+name, help, labels, l)
	}
	return &Source{kind: kind, stats: stats,
		connected:  d("source_connected", "1 while the source works: the polling source's heartbeat succeeds, a log source streams."),
		standby:    d("source_standby", "1 while a log source waits as a hot standby (another relay reads)."),
		claims:     d("relay_claims_total", "Claims of the polling source, by result: messages, empty or error.", "result"),
		owned:      d("relay_partitions_owned", "Slices of the key space this polling relay claims from."),
		parts:      d("relay_partitions", "Slices of the key space among the live relays of its group."),
		pending:    d("source_pending_messages", "Messages a log source read and has not finished (queued or being published)."),
		reconnects: d("source_reconnects_total", "Sessions of a log source that ended in an error."),
		retained:   d("wal_retained_bytes", "WAL the replication slot holds back: from the server's current position to the slot's confirmed one."),
		lagSeconds: d("binlog_lag_seconds", "Time since the last binlog event the source read, while the server's binary log goes further; 0 when caught up."),
		lagBytes:   d("binlog_lag_bytes", "Binary log from the source's read position to the server's current position."),
	}
}

// PollStats returns the stats function of a polling source, for NewSource("poll", ...).
func PollStats(s *poll.Source) func() SourceStats {
	return func() SourceStats {
		st := s.Stats()
		return SourceStats{
			Connected:       !st.LastHeartbeat.IsZero() && st.HeartbeatError == "",
			Claims:          st.Claims,
			EmptyClaims:     st.EmptyClaims,
			ClaimErrors:     st.ClaimErrors,
			OwnedPartitions: s.Concurrency(),
			Partitions:      s.Concurrency() * st.Membership.Count,
		}
	}
}

// Describe implements prometheus.Collector.
func (s *Source) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.connected, s.standby, s.claims, s.owned, s.parts, s.pending, s.reconnects, s.retained, s.lagSeconds, s.lagBytes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (s *Source) Collect(ch chan<- prometheus.Metric) {
	st := s.stats()
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	c := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	g(s.connected, b2f(st.Connected))
	if s.kind == "poll" {
		c(s.claims, float64(st.Claims), "messages")
		c(s.claims, float64(st.EmptyClaims), "empty")
		c(s.claims, float64(st.ClaimErrors), "error")
		g(s.owned, float64(st.OwnedPartitions))
		g(s.parts, float64(st.Partitions))
		return
	}
	g(s.standby, b2f(st.Standby))
	g(s.pending, float64(st.Pending))
	c(s.reconnects, float64(st.Reconnects))
	if st.HasRetained {
		g(s.retained, float64(st.RetainedBytes))
	}
	if st.HasLag {
		g(s.lagSeconds, st.LagSeconds)
		g(s.lagBytes, float64(st.LagBytes))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
