package metrics_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/metrics"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/relaytest"
)

// The relay's metrics: a hook for the relay, a collector for the registry.
func ExampleRelay() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := relaytest.NewSource(relaytest.SourceConfig{})
	src.Enqueue(outbox.Message{Topic: "orders.created", Key: "o-1"}, outbox.Message{Topic: "orders.paid", Key: "o-1"})

	m := metrics.NewRelay(metrics.RelayOptions{SinkName: "nats"})
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	r, err := relay.New(relay.Config{Source: src, Sink: relaytest.NewSink(), SinkName: "nats",
		Hooks: []relay.Hook{m, stopWhenDrained{src: src, cancel: cancel}}})
	if err != nil {
		log.Fatal(err)
	}
	m.Watch(r)
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP outbox_relay_published_total Messages their sink acknowledged (duplicates the broker recognised included).
# TYPE outbox_relay_published_total counter
outbox_relay_published_total{sink="nats"} 2
`), "outbox_relay_published_total")
	fmt.Println("published counted:", err == nil)
	// Output: published counted: true
}

// stopWhenDrained stops the relay once its source has nothing left.
type stopWhenDrained struct {
	src    *relaytest.Source
	cancel context.CancelFunc
}

func (h stopWhenDrained) OnBatchFinished([]outbox.Record, outbox.Outcome, error) {
	if h.src.Stats().Pending == 0 {
		h.cancel()
	}
}
