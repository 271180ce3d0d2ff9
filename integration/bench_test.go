package integration_test

import (
	"cmp"
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
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

// countingHook counts acknowledged messages.
type countingHook struct{ published atomic.Int64 }

func (o *countingHook) OnBatchFinished(_ []outbox.Record, out outbox.Outcome, err error) {
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
// claiming (Store.Claim), publishing (Sink.Publish), finishing (Claim.Finish) and
// checkpointing (Claim.Checkpoint, overlapping the publishing of the next wave), summed over
// workers; the CPU seconds of this process, of the PostgreSQL server processes and of
// nats-server over the drain (from /proc; other work on the machine counts too); and the
// share of the machine's CPU time left idle (idle_pct).
func BenchmarkDrain(b *testing.B) {
	const n, keys = 100_000, 1000
	bd, inner := benchEnv(b)
	var (
		total time.Duration
		cpu   [3]float64 // this process, postgres, nats-server
		idle  [2]float64 // machine idle and total CPU seconds
	)
	st := &timedStore{Store: bd.store}
	sk := &timedSink{Sink: inner}
	for range b.N {
		b.StopTimer()
		backlog(b, bd, n, keys)
		if _, err := bd.pool.Exec(context.Background(), `VACUUM ANALYZE `+bd.table); err != nil {
			b.Fatal(err)
		}
		obs := &countingHook{}
		b.StartTimer()
		cpu0 := processCPU()
		idle0, all0 := machineCPU(b)
		start := time.Now()
		stop := startRelayOn(b, st, sk, poll.Config{}, relay.Config{Hooks: []relay.Hook{obs}})
		for obs.published.Load() < n {
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		cpu1 := processCPU()
		idle1, all1 := machineCPU(b)
		b.StopTimer()
		stop()
		for i := range cpu {
			cpu[i] += cpu1[i] - cpu0[i]
		}
		idle[0] += idle1 - idle0
		idle[1] += all1 - all0
	}
	per := func(ns int64) float64 { return time.Duration(ns).Seconds() / float64(b.N) }
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
	b.ReportMetric(per(st.claimNS.Load()), "claim_s")
	b.ReportMetric(per(sk.ns.Load()), "publish_s")
	b.ReportMetric(per(st.finishNS.Load()), "finish_s")
	b.ReportMetric(per(st.checkpointNS.Load()), "checkpoint_s")
	b.ReportMetric(cpu[0]/float64(b.N), "cpu_self_s")
	b.ReportMetric(cpu[1]/float64(b.N), "cpu_postgres_s")
	b.ReportMetric(cpu[2]/float64(b.N), "cpu_nats_s")
	b.ReportMetric(100*idle[0]/idle[1], "idle_pct")
	b.ReportMetric(sourcetest.PeakRSSMB(), "peakRSS_MB")
}

// machineCPU returns the machine's idle and total CPU seconds so far, from /proc/stat.
func machineCPU(b *testing.B) (idle, total float64) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:] {
		x, _ := strconv.ParseFloat(v, 64)
		if i >= 8 { // guest and guest_nice are already counted in user and nice
			break
		}
		total += x / 100
		if i == 3 || i == 4 {
			idle += x / 100
		}
	}
	return idle, total
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
	claimNS, finishNS, checkpointNS atomic.Int64
}

func (s *timedStore) Claim(ctx context.Context, req dialect.ClaimRequest) (dialect.Claim, error) {
	t := time.Now()
	c, err := s.Store.Claim(ctx, req)
	s.claimNS.Add(int64(time.Since(t)))
	if err != nil {
		return nil, err
	}
	tc := &timedClaim{Claim: c, s: s}
	if cp, ok := c.(dialect.Checkpointer); ok {
		return &timedCheckpointClaim{timedClaim: tc, cp: cp}, nil
	}
	return tc, nil
}

// timedCheckpointClaim is a timedClaim that checkpoints (dialect.Checkpointer), adding the
// checkpoints' time to the store's checkpointNS.
type timedCheckpointClaim struct {
	*timedClaim
	cp dialect.Checkpointer
}

func (c *timedCheckpointClaim) Checkpoint(ctx context.Context, o outbox.Outcome) error {
	t := time.Now()
	err := c.cp.Checkpoint(ctx, o)
	c.s.checkpointNS.Add(int64(time.Since(t)))
	return err
}

type timedClaim struct {
	dialect.Claim
	s *timedStore
}

func (c *timedClaim) Finish(ctx context.Context, o outbox.Outcome) error {
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

// BenchmarkSteadyLatency commits 1,000 events/s (four producers, one message per transaction)
// for OUTBOX_BENCH_SECONDS (default 10) and reports commit→PubAck latency.
func BenchmarkSteadyLatency(b *testing.B) {
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
			cfg := mode.cfg
			cfg.Store = bd.store
			newSource := func() *poll.Source {
				src, err := poll.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				return src
			}
			sourcetest.SteadyLatency(b, inner, newSource, func(*poll.Source) bool { return true },
				func(ctx context.Context, m outbox.Message) error {
					return pgx.BeginFunc(ctx, bd.pool, func(tx pgx.Tx) error { return bd.writer.Enqueue(ctx, tx, m) })
				})
		})
	}
}
