package sourcetest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/sink"
)

// backlog commits n messages over keys ("k0", "k1"...) with an order-sized JSON payload, in
// transactions of 10,000 (one commit call each).
func backlog(tb testing.TB, n, keys int, commit func(tb testing.TB, msgs ...outbox.Message)) {
	payload := []byte(`{"order_id":"0000000000","customer":"c-42","amount_cents":4200,"currency":"EUR"}`)
	for start := 0; start < n; start += 10000 {
		msgs := make([]outbox.Message, min(10000, n-start))
		for i := range msgs {
			msgs[i] = outbox.Message{Topic: "bench.orders", Key: "k" + strconv.Itoa((start+i)%keys), Payload: payload}
		}
		commit(tb, msgs...)
	}
}

// countingHook counts acknowledged messages.
type countingHook struct{ published atomic.Int64 }

func (o *countingHook) OnBatchFinished(_ []outbox.Record, out outbox.Outcome, err error) {
	if err == nil {
		o.published.Add(int64(len(out.Published)))
	}
}

// Drain runs a drain benchmark: b.N times, n messages over keys are committed with commit,
// in transactions of 10,000, and newSource makes a source (neither timed); then a relay over
// it publishes them into sk, timed until all n are acknowledged and settled reports true (nil:
// nothing more to wait for, such as the deletes of the acknowledged rows). It reports
// events/s and peakRSS_MB.
func Drain(b *testing.B, n, keys int, sk sink.Sink, commit func(tb testing.TB, msgs ...outbox.Message),
	newSource func() relay.Source, settled func() bool) {
	var total time.Duration
	for range b.N {
		b.StopTimer()
		backlog(b, n, keys, commit)
		obs := &countingHook{}
		src := newSource()
		b.StartTimer()
		start := time.Now()
		r := StartRelay(b, src, sk, relay.Config{Hooks: []relay.Hook{obs}, Logger: slog.New(slog.DiscardHandler)})
		for obs.published.Load() < int64(n) {
			time.Sleep(time.Millisecond)
		}
		for settled != nil && !settled() {
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		b.StopTimer()
		if err := r.Stop(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
	b.ReportMetric(PeakRSSMB(), "peakRSS_MB")
}

// SteadyLatency runs a steady-latency benchmark: b.N times, a relay over a new source
// publishes into inner (once streaming reports the source streams) while four producers
// commit 1,000 messages/s with commit, one message per transaction, for OUTBOX_BENCH_SECONDS
// (default 10). It reports commit→PubAck latency (p50_ms, p99_ms, max_ms) and peakRSS_MB.
func SteadyLatency[S relay.Source](b *testing.B, inner sink.Sink, newSource func() S, streaming func(S) bool,
	commit func(ctx context.Context, m outbox.Message) error) {
	seconds := 10
	if s, err := strconv.Atoi(os.Getenv("OUTBOX_BENCH_SECONDS")); err == nil && s > 0 {
		seconds = s
	}
	sk := &latencySink{Sink: inner, handed: map[uuid.UUID]time.Time{}, acked: map[uuid.UUID]time.Time{}}
	var lat, waits, pubs []time.Duration
	for range b.N {
		src := newSource()
		r := StartRelay(b, src, sk, relay.Config{Logger: slog.New(slog.DiscardHandler)})
		WaitFor(b, 60*time.Second, "streaming", func() bool { return streaming(src) })
		l, w, p := steady(b, sk, commit, 1000, time.Duration(seconds)*time.Second)
		lat, waits, pubs = append(lat, l...), append(waits, w...), append(pubs, p...)
		if err := r.Stop(); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max_ms")
	// Where the slowest ones spent their time: waiting to be handed to the sink (claimed or
	// read from the log) or in the sink (publish until PubAck).
	b.ReportMetric(float64(slices.Max(waits))/1e6, "max_wait_ms")
	b.ReportMetric(float64(slices.Max(pubs))/1e6, "max_publish_ms")
	late := 0
	for _, l := range lat {
		if l > 100*time.Millisecond {
			late++
		}
	}
	b.ReportMetric(float64(late), "over100ms")
	b.ReportMetric(PeakRSSMB(), "peakRSS_MB")
}

// latencySink stamps the moment each message was first handed to it and the moment its
// PubAck came back.
type latencySink struct {
	sink.Sink
	mu     sync.Mutex
	handed map[uuid.UUID]time.Time
	acked  map[uuid.UUID]time.Time
}

func (s *latencySink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	start := time.Now()
	s.mu.Lock()
	for _, m := range msgs {
		if _, ok := s.handed[m.ID]; !ok {
			s.handed[m.ID] = start
		}
	}
	s.mu.Unlock()
	res := s.Sink.Publish(ctx, msgs)
	now := time.Now()
	s.mu.Lock()
	for i, m := range msgs {
		if res[i] == nil {
			if _, ok := s.acked[m.ID]; !ok {
				s.acked[m.ID] = now
			}
		}
	}
	s.mu.Unlock()
	return res
}

// steady commits rate messages/s for d and returns each one's commit→PubAck latency, and its
// two parts: commit→handed to the sink, handed→PubAck.
func steady(b *testing.B, sk *latencySink, commit func(ctx context.Context, m outbox.Message) error,
	rate int, d time.Duration) (lat, waits, pubs []time.Duration) {
	const producers = 4
	ctx := context.Background()
	var (
		mu        sync.Mutex
		committed = map[uuid.UUID]time.Time{}
		wg        sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second * producers / time.Duration(rate))
			defer tick.Stop()
			for i := 0; time.Now().Before(deadline); i++ {
				<-tick.C
				m := outbox.Message{ID: outbox.NewID(), Topic: "bench.steady", Key: fmt.Sprintf("p%d-k%d", p, i%50), Payload: []byte(`{"n":1}`)}
				if err := commit(ctx, m); err != nil {
					b.Error(err)
					return
				}
				at := time.Now()
				mu.Lock()
				committed[m.ID] = at
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	waitUntil := time.Now().Add(30 * time.Second)
	for {
		sk.mu.Lock()
		done := true
		for id := range committed {
			if _, ok := sk.acked[id]; !ok {
				done = false
				break
			}
		}
		if done {
			break
		}
		sk.mu.Unlock()
		if time.Now().After(waitUntil) {
			b.Fatalf("messages not acknowledged within 30s of the last commit")
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer sk.mu.Unlock()
	for id, c := range committed {
		h, a := sk.handed[id], sk.acked[id]
		lat = append(lat, max(0, a.Sub(c)))
		waits = append(waits, max(0, h.Sub(c)))
		pubs = append(pubs, a.Sub(h))
	}
	return lat, waits, pubs
}

// PeakRSSMB is the process's peak resident set (VmHWM), relay and producers together.
func PeakRSSMB() float64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
