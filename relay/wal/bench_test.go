package wal_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/natstest"
	"github.com/outboxgo/outbox/internal/pgtest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/wal"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/nats"
)

// benchEnv is a fresh schema and slot, a private JetStream stream and a NATS sink.
func benchEnv(b *testing.B, mode wal.Mode) (*env, sink.Sink) {
	b.Helper()
	e := setup(b, mode)
	nc := natstest.Connect(b)
	_, prefix := natstest.Stream(b, nc)
	sk, err := nats.New(context.Background(), nats.Config{URL: natstest.URL(), SubjectPrefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sk.Close() })
	return e, sk
}

// benchConfig is the source configuration of the benchmarks: defaults, quiet logs.
func (e *env) benchConfig() wal.Config {
	return wal.Config{ConnString: pgtest.URL(), Pool: e.pool, Mode: e.mode, Table: e.table, SlotName: e.slot,
		MessagePrefix: e.prefix, Logger: quietLogger()}
}

// countingObserver counts acknowledged messages.
type countingObserver struct{ published atomic.Int64 }

func (o *countingObserver) BatchFinished(_ []outbox.Record, out dialect.Outcome, err error) {
	if err == nil {
		o.published.Add(int64(len(out.Published)))
	}
}

// backlog commits n messages over keys in transactions of 10,000.
func (e *env) backlog(b *testing.B, n, keys int) {
	b.Helper()
	ctx := context.Background()
	payload := []byte(`{"order_id":"0000000000","customer":"c-42","amount_cents":4200,"currency":"EUR"}`)
	for start := 0; start < n; start += 10000 {
		msgs := make([]outbox.Message, min(10000, n-start))
		for i := range msgs {
			msgs[i] = outbox.Message{Topic: "bench.orders", Key: "k" + strconv.Itoa((start+i)%keys), Payload: payload}
		}
		if err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error { return e.enqueue(ctx, tx, msgs...) }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDrainWAL measures how fast one relay on the WAL source moves a 100,000-message
// backlog (committed while the relay was down) from PostgreSQL into NATS JetStream (file
// storage, PubAck awaited for each message), in both storage modes. Table mode includes
// deleting the acknowledged rows.
func BenchmarkDrainWAL(b *testing.B) {
	const n, keys = 100_000, 1000
	for _, mode := range modes {
		b.Run("mode="+string(mode), func(b *testing.B) {
			e, sk := benchEnv(b, mode)
			if err := e.source(b, e.benchConfig()).Setup(context.Background()); err != nil {
				b.Fatal(err)
			}
			var total time.Duration
			for range b.N {
				b.StopTimer()
				e.backlog(b, n, keys)
				obs := &countingObserver{}
				src := e.source(b, e.benchConfig())
				b.StartTimer()
				start := time.Now()
				r := startRelay(b, src, sk, relay.Config{Observer: obs, Logger: quietLogger()})
				for obs.published.Load() < n {
					time.Sleep(time.Millisecond)
				}
				if mode == wal.ModeTable {
					for e.rows(b) > 0 {
						time.Sleep(time.Millisecond)
					}
				}
				total += time.Since(start)
				b.StopTimer()
				if err := r.stop(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
			b.ReportMetric(peakRSSMB(), "peakRSS_MB")
		})
	}
}

// latencySink stamps the moment each message's PubAck came back.
type latencySink struct {
	sink.Sink
	mu    sync.Mutex
	acked map[uuid.UUID]time.Time
}

func (s *latencySink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
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

// BenchmarkSteadyLatencyWAL commits 1,000 events/s (four producers, one message per
// transaction) for OUTBOX_BENCH_SECONDS (default 10) and reports commit→PubAck latency.
func BenchmarkSteadyLatencyWAL(b *testing.B) {
	seconds := 10
	if s, err := strconv.Atoi(os.Getenv("OUTBOX_BENCH_SECONDS")); err == nil && s > 0 {
		seconds = s
	}
	for _, mode := range modes {
		b.Run("mode="+string(mode), func(b *testing.B) {
			e, inner := benchEnv(b, mode)
			sk := &latencySink{Sink: inner, acked: map[uuid.UUID]time.Time{}}
			var lat []time.Duration
			for range b.N {
				src := e.source(b, e.benchConfig())
				r := startRelay(b, src, sk, relay.Config{Logger: quietLogger()})
				waitFor(b, 60*time.Second, "streaming", func() bool { return src.Stats().Streaming })
				lat = append(lat, e.steady(b, sk, 1000, time.Duration(seconds)*time.Second)...)
				if err := r.stop(); err != nil {
					b.Fatal(err)
				}
			}
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
			b.ReportMetric(pct(0.50), "p50_ms")
			b.ReportMetric(pct(0.99), "p99_ms")
			b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max_ms")
			b.ReportMetric(peakRSSMB(), "peakRSS_MB")
		})
	}
}

func (e *env) steady(b *testing.B, sk *latencySink, rate int, d time.Duration) []time.Duration {
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
				err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error { return e.enqueue(ctx, tx, m) })
				if err != nil {
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
	out := make([]time.Duration, 0, len(committed))
	for id, c := range committed {
		out = append(out, max(0, sk.acked[id].Sub(c)))
	}
	return out
}

// peakRSSMB is the process's peak resident set (VmHWM), relay and producers together.
func peakRSSMB() float64 {
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
