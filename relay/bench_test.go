package relay_test

import (
	"cmp"
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
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/nats"
)

// benchEnv is a fresh schema, a private JetStream stream and a NATS sink.
func benchEnv(b *testing.B) (*bundle, sink.Sink) {
	b.Helper()
	bd := setup(b)
	nc := natstest.Connect(b)
	_, prefix := natstest.Stream(b, nc)
	sk, err := nats.New(context.Background(), nats.Config{URL: natstest.URL(), SubjectPrefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sk.Close() })
	return bd, sk
}

// countingObserver counts acknowledged messages.
type countingObserver struct{ published atomic.Int64 }

func (o *countingObserver) BatchFinished(_ []outbox.Record, out dialect.Outcome, err error) {
	if err == nil {
		o.published.Add(int64(len(out.Published)))
	}
}

// backlog commits n messages over keys in large transactions.
func backlog(b *testing.B, bd *bundle, n, keys int) {
	b.Helper()
	ctx := context.Background()
	payload := []byte(`{"order_id":"0000000000","customer":"c-42","amount_cents":4200,"currency":"EUR"}`)
	for start := 0; start < n; start += 10000 {
		msgs := make([]outbox.Message, min(10000, n-start))
		for i := range msgs {
			msgs[i] = outbox.Message{Topic: "bench.orders", Key: "k" + strconv.Itoa((start+i)%keys), Payload: payload}
		}
		if err := pgx.BeginFunc(ctx, bd.pool, func(tx pgx.Tx) error { return bd.writer.Enqueue(ctx, tx, msgs...) }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDrain measures how fast one relay empties a 100,000-message backlog from
// PostgreSQL into NATS JetStream (file storage, PubAck awaited for each message).
//
// Besides events/s it reports where the time goes, per drain: the workers' seconds spent
// claiming (Store.Claim), publishing (Sink.Publish) and finishing (Claim.Finish), summed over
// workers; and the CPU seconds of this process, of the PostgreSQL server processes and of
// nats-server over the drain (from /proc; other work on the machine counts too).
func BenchmarkDrain(b *testing.B) {
	const n, keys = 100_000, 1000
	bd, inner := benchEnv(b)
	var (
		total time.Duration
		cpu   [3]float64 // this process, postgres, nats-server
	)
	st := &timedStore{Store: bd.store}
	sk := &timedSink{Sink: inner}
	for range b.N {
		b.StopTimer()
		backlog(b, bd, n, keys)
		if _, err := bd.pool.Exec(context.Background(), `VACUUM ANALYZE `+bd.table); err != nil {
			b.Fatal(err)
		}
		obs := &countingObserver{}
		b.StartTimer()
		cpu0 := processCPU()
		start := time.Now()
		stop := startRelayOn(b, st, sk, poll.Config{}, relay.Config{Observer: obs})
		for obs.published.Load() < n {
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		cpu1 := processCPU()
		b.StopTimer()
		stop()
		for i := range cpu {
			cpu[i] += cpu1[i] - cpu0[i]
		}
	}
	per := func(ns int64) float64 { return time.Duration(ns).Seconds() / float64(b.N) }
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
	b.ReportMetric(per(st.claimNS.Load()), "claim_s")
	b.ReportMetric(per(sk.ns.Load()), "publish_s")
	b.ReportMetric(per(st.finishNS.Load()), "finish_s")
	b.ReportMetric(cpu[0]/float64(b.N), "cpu_self_s")
	b.ReportMetric(cpu[1]/float64(b.N), "cpu_postgres_s")
	b.ReportMetric(cpu[2]/float64(b.N), "cpu_nats_s")
	b.ReportMetric(peakRSSMB(), "peakRSS_MB")
}

// startRelayOn is startRelay with a store of the caller's (a wrapper of the bundle's).
func startRelayOn(b *testing.B, store dialect.Store, sk sink.Sink, pcfg poll.Config, rcfg relay.Config) (stop func()) {
	b.Helper()
	pcfg.Store = store
	pcfg.PollInterval = cmp.Or(pcfg.PollInterval, 10*time.Millisecond)
	src, err := poll.New(pcfg)
	if err != nil {
		b.Fatal(err)
	}
	rcfg.Source, rcfg.Sink = src, sk
	r, err := relay.New(rcfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("relay.Run: %v", err)
		}
	}
}

// timedStore adds up the time spent in Claim and in the claims' Finish.
type timedStore struct {
	dialect.Store
	claimNS, finishNS atomic.Int64
}

func (s *timedStore) Claim(ctx context.Context, req dialect.ClaimRequest) (dialect.Claim, error) {
	t := time.Now()
	c, err := s.Store.Claim(ctx, req)
	s.claimNS.Add(int64(time.Since(t)))
	if err != nil {
		return nil, err
	}
	return &timedClaim{Claim: c, s: s}, nil
}

type timedClaim struct {
	dialect.Claim
	s *timedStore
}

func (c *timedClaim) Finish(ctx context.Context, o dialect.Outcome) error {
	t := time.Now()
	err := c.Claim.Finish(ctx, o)
	c.s.finishNS.Add(int64(time.Since(t)))
	return err
}

// timedSink adds up the time spent in Publish.
type timedSink struct {
	sink.Sink
	ns atomic.Int64
}

func (s *timedSink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	t := time.Now()
	res := s.Sink.Publish(ctx, msgs)
	s.ns.Add(int64(time.Since(t)))
	return res
}

// processCPU returns the CPU seconds (utime + stime) used so far by this process, by all
// processes named postgres and by nats-server, from /proc.
func processCPU() [3]float64 {
	var out [3]float64
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		stat := string(raw)
		open, end := strings.IndexByte(stat, '('), strings.LastIndexByte(stat, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(stat[end+1:])
		if len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseFloat(f[11], 64)
		stime, _ := strconv.ParseFloat(f[12], 64)
		secs := (utime + stime) / 100 // USER_HZ
		switch name := stat[open+1 : end]; {
		case pid == self:
			out[0] += secs
		case name == "postgres":
			out[1] += secs
		case name == "nats-server":
			out[2] += secs
		}
	}
	return out
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

// BenchmarkSteadyLatency commits 1,000 events/s (four producers, one message per transaction)
// for OUTBOX_BENCH_SECONDS (default 10) and reports commit→PubAck latency.
func BenchmarkSteadyLatency(b *testing.B) {
	seconds := 10
	if s, err := strconv.Atoi(os.Getenv("OUTBOX_BENCH_SECONDS")); err == nil && s > 0 {
		seconds = s
	}
	modes := []struct {
		name string
		cfg  poll.Config
	}{
		{"poll=100ms", poll.Config{PollInterval: 100 * time.Millisecond, DisableNotify: true}},
		{"notify+poll=1s", poll.Config{PollInterval: time.Second}},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			bd, inner := benchEnv(b)
			sk := &latencySink{Sink: inner, acked: map[uuid.UUID]time.Time{}}
			var lat []time.Duration
			for range b.N {
				startRelay(b, bd, sk, mode.cfg, relay.Config{})
				lat = append(lat, steady(b, bd, sk, 1000, time.Duration(seconds)*time.Second)...)
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

func steady(b *testing.B, bd *bundle, sk *latencySink, rate int, d time.Duration) []time.Duration {
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
				err := pgx.BeginFunc(ctx, bd.pool, func(tx pgx.Tx) error { return bd.writer.Enqueue(ctx, tx, m) })
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
			st, _ := bd.store.Stats(ctx)
			b.Fatalf("messages not acknowledged within 30s of the last commit: %d committed, %d acked, stats %+v", len(committed), len(sk.acked), st)
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
