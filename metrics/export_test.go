package metrics

import "github.com/prometheus/client_golang/prometheus"

func (m *Relay) PublishedVec() *prometheus.CounterVec  { return m.published }
func (m *Relay) HeldVec() *prometheus.CounterVec       { return m.held }
func (m *Relay) DuplicatesVec() *prometheus.CounterVec { return m.duplicates }
func (m *Relay) RetriedVec() *prometheus.CounterVec    { return m.retried }
