package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/metrics"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/relaytest"
	"github.com/outboxgo/outbox/sink"
)

// A relay with the metrics hook over an in-memory source: every outcome lands in its
// counter, the histograms count what was acknowledged, and a sink that is down shows as
// paused until it heals.
func TestRelayMetrics(t *testing.T) {
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	sk.Script(relaytest.Rule{Topic: "bad", Err: sink.Permanent(errors.New("refused"))})
	sk.Script(relaytest.Rule{Topic: "flaky", Attempt: 1, Err: errors.New("timeout")})
	heal := sk.Script(relaytest.Rule{Topic: "down", Err: sink.Unavailable(errors.New("connection refused"))})

	m := metrics.NewRelay(metrics.RelayOptions{SinkName: "nats"})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	r, err := relay.New(relay.Config{Source: src, Sink: sk, SinkName: "nats", Hooks: []relay.Hook{m},
		BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, Logger: slog.New(slog.DiscardHandler), MaxProbeInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m.Watch(r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	}()

	published := func() float64 { return testutil.ToFloat64(m.PublishedVec().WithLabelValues("nats")) }
	paused := func(v int) string {
		return fmt.Sprintf(`
# HELP outbox_relay_sink_paused 1 while the sink is paused after sink-wide failures (its messages wait, attempts kept), else 0.
# TYPE outbox_relay_sink_paused gauge
outbox_relay_sink_paused{sink="nats"} %d
`, v)
	}
	src.Enqueue(outbox.Message{Topic: "down", Key: "d"})
	held := func() float64 { return testutil.ToFloat64(m.HeldVec().WithLabelValues("nats")) }
	waitFor(t, "the sink paused", func() bool { return len(r.Paused()) == 1 && held() == 1 })
	if err := testutil.GatherAndCompare(reg, strings.NewReader(paused(1)), "outbox_relay_sink_paused"); err != nil {
		t.Fatal(err)
	}
	heal()

	var msgs []outbox.Message
	for range 5 {
		msgs = append(msgs, outbox.Message{Topic: "ok", Key: "k"})
	}
	msgs = append(msgs, outbox.Message{Topic: "bad", Key: "b"}, outbox.Message{Topic: "flaky", Key: "f"})
	src.Enqueue(msgs...)
	waitFor(t, "7 published and 1 dead letter", func() bool {
		return published() == 7 && src.Stats().DeadLetters == 1 && len(r.Paused()) == 0
	})
	want := `
# HELP outbox_relay_dead_lettered_total Messages moved to the dead-letter table (out of attempts, or refused for good).
# TYPE outbox_relay_dead_lettered_total counter
outbox_relay_dead_lettered_total{sink="nats"} 1
# HELP outbox_relay_retried_total Failed publish attempts scheduled for another attempt after a backoff.
# TYPE outbox_relay_retried_total counter
outbox_relay_retried_total{sink="nats"} 1
` + paused(0)
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "outbox_relay_dead_lettered_total",
		"outbox_relay_retried_total", "outbox_relay_sink_paused"); err != nil {
		t.Fatal(err)
	}
	if got := testutil.CollectAndCount(m, "outbox_relay_delivery_latency_seconds", "outbox_relay_publish_duration_seconds"); got != 2 {
		t.Errorf("%d latency and duration series, want 2", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// With TopicLabel the counters carry the topic.
func TestRelayMetricsTopicLabel(t *testing.T) {
	m := metrics.NewRelay(metrics.RelayOptions{TopicLabel: true})
	recs := []outbox.Record{{Seq: 1, Message: outbox.Message{Topic: "a"}}, {Seq: 2, Message: outbox.Message{Topic: "b"}}}
	m.OnBatchFinished(recs, outbox.Outcome{Published: []int64{1, 2}, Duplicates: []int64{2}}, nil)
	if got := testutil.ToFloat64(m.PublishedVec().WithLabelValues("sink", "b")); got != 1 {
		t.Errorf("published{topic=b} = %v", got)
	}
	if got := testutil.ToFloat64(m.DuplicatesVec().WithLabelValues("sink", "b")); got != 1 {
		t.Errorf("broker_duplicates{topic=b} = %v", got)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Operator pauses show as a count per kind, beside (not in) the outage gauge, and held
// messages count as no retry.
func TestRelayMetricsOperatorPauses(t *testing.T) {
	src := relaytest.NewSource(relaytest.SourceConfig{})
	sk := relaytest.NewSink()
	var ps relaytest.Pauses
	ctx := context.Background()
	for _, p := range []dialect.Pause{{Kind: dialect.PauseTopic, Name: "a"}, {Kind: dialect.PauseTopic, Name: "b"}, {Kind: dialect.PauseSink, Name: "other"}} {
		if err := ps.Pause(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	m := metrics.NewRelay(metrics.RelayOptions{SinkName: "nats"})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	rn := relaytest.Start(t, relay.Config{Source: src, Sink: sk, SinkName: "nats", Hooks: []relay.Hook{m}, Pauses: &ps, PauseInterval: 10 * time.Millisecond})
	m.Watch(rn.Relay)
	src.Enqueue(outbox.Message{Topic: "a", Key: "k"}, outbox.Message{Topic: "c", Key: "j"})
	relaytest.WaitFor(t, 5*time.Second, "the unpaused topic", func() bool { return sk.Unique() == 1 })
	time.Sleep(50 * time.Millisecond) // the paused topic's message held a few times
	want := `
# HELP outbox_relay_operator_pauses Operator pauses (outbox pause, the admin API) the relay read last, by kind (topic, sink): their messages wait until resumed.
# TYPE outbox_relay_operator_pauses gauge
outbox_relay_operator_pauses{kind="sink"} 1
outbox_relay_operator_pauses{kind="topic"} 2
# HELP outbox_relay_retried_total Failed publish attempts scheduled for another attempt after a backoff.
# TYPE outbox_relay_retried_total counter
outbox_relay_retried_total{sink="nats"} 0
# HELP outbox_relay_sink_paused 1 while the sink is paused after sink-wide failures (its messages wait, attempts kept), else 0.
# TYPE outbox_relay_sink_paused gauge
outbox_relay_sink_paused{sink="nats"} 0
`
	m.RetriedVec().WithLabelValues("nats") // the series exists at 0
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "outbox_relay_operator_pauses", "outbox_relay_retried_total", "outbox_relay_sink_paused"); err != nil {
		t.Fatal(err)
	}
}
