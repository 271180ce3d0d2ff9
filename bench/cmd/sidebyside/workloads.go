package main

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
)

// DrainResult is the backlog workload: N messages committed first, then one relay started.
type DrainResult struct {
	Messages        int
	Published       int     // stored in the stream when the clock stopped
	Seconds         float64 // relay start → the stream holds all N
	EventsPerSec    float64
	Complete        bool
	CPUSeconds      float64
	CPUPercent      float64
	CPUmsPer1k      float64 // relay CPU milliseconds per 1,000 messages
	PeakRSSMB       float64
	Received        int64 // distinct messages read back by a consumer afterwards
	Duplicates      int64
	OrderViolations int64 // per-key order (seq%keys), first deliveries
	RowsLeft        int64
	CPUPressure     float64 // machine-wide PSI "some" CPU stall, % of the window
}

// SteadyResult is the fixed-rate workload: one message per transaction.
type SteadyResult struct {
	Sent         int
	AchievedRate float64 // commits/s actually reached
	P50ms        float64
	P99ms        float64
	Maxms        float64
	Missing      int
	Duplicates   int64
	CPUPercent   float64
	PeakRSSMB    float64
	CPUPressure  float64
}

// IdleResult is single messages after idle gaps.
type IdleResult struct {
	Samples     int
	P50ms       float64
	Meanms      float64
	Maxms       float64
	Missing     int
	CPUPercent  float64 // over the whole (mostly idle) workload
	PeakRSSMB   float64
	CPUPressure float64
}

// OverheadResult is the producer's cost: a transaction with one business INSERT plus the
// system's enqueue, run serially on one connection with no relay running.
type OverheadResult struct {
	Tx         int
	MeanUS     float64
	P50US      float64
	P99US      float64
	OverheadUS float64 // mean minus the plain INSERT's mean
}

const drainChunk = 10_000

// drain commits a backlog of o.messages, then measures how long one fresh relay takes until
// JetStream has stored them all, and reads them back to check them.
func drain(ctx context.Context, o options, s *system, pool *pgxpool.Pool, js jetstream.JetStream) (*DrainResult, error) {
	const topic = "drain"
	n := o.messages
	if err := s.createSlot(ctx, o, pool); err != nil {
		return nil, err
	}
	defer dropSlot(s, pool)
	for start := 0; start < n; start += drainChunk {
		msgs := make([]benchMsg, min(drainChunk, n-start))
		for i := range msgs {
			msgs[i] = newMsg(start+i, o.drainKeys)
		}
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return s.enqueue(ctx, tx, topic, msgs) }); err != nil {
			return nil, fmt.Errorf("committing backlog: %w", err)
		}
	}
	if err := s.vacuum(ctx, pool); err != nil {
		return nil, err
	}
	stream, err := js.Stream(ctx, s.Stream)
	if err != nil {
		return nil, err
	}
	stored := func() (int, error) {
		info, err := stream.Info(ctx)
		if err != nil {
			return 0, err
		}
		return int(info.State.Msgs), nil
	}
	base, err := stored()
	if err != nil {
		return nil, err
	}

	p, err := startRelay(o, s)
	if err != nil {
		return nil, err
	}
	defer s.stopRelay(p) //nolint:errcheck // cleanup on an early return; the drain checks stopRelay's error below
	psi0 := cpuPressure()
	if err := p.Go(); err != nil {
		return nil, err
	}
	start := time.Now()
	var done int
	for {
		cur, err := stored()
		if err != nil {
			return nil, err
		}
		done = cur - base
		if done >= n || time.Since(start) > o.drainTimeout || ctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	u, err := p.Usage()
	if err != nil {
		return nil, err
	}
	if err := s.stopRelay(p); err != nil {
		return nil, fmt.Errorf("stopping relay: %w", err)
	}
	r := &DrainResult{
		Messages: n, Published: done, Seconds: elapsed.Seconds(), Complete: done >= n,
		EventsPerSec: float64(min(done, n)) / elapsed.Seconds(),
		CPUSeconds:   u.CPUSeconds, CPUPercent: u.CPUPercent(), PeakRSSMB: u.PeakRSSMB,
		CPUPressure: pressureSince(psi0, elapsed),
	}
	if done > 0 {
		r.CPUmsPer1k = 1000 * u.CPUSeconds / (float64(done) / 1000)
	}

	// Read everything back: completeness, duplicates and per-key order.
	col := newCollector(time.Now(), n, o.drainKeys)
	final, err := stored()
	if err != nil {
		return nil, err
	}
	stop, err := consume(ctx, js, s.Stream, s.Prefix+topic, col)
	if err != nil {
		return nil, err
	}
	wait(ctx, &col.seen, int64(final-base), 60*time.Second)
	stop()
	r.Received, r.Duplicates, r.OrderViolations = col.distinct.Load(), col.dups.Load(), col.orderViolations.Load()
	if r.RowsLeft, err = s.pendingRows(ctx, pool); err != nil {
		return nil, err
	}
	// Later workloads start from clean tables as far as each design allows.
	if err := s.vacuum(ctx, pool); err != nil {
		return nil, err
	}
	return r, nil
}

// steady commits o.steadyRate single-message transactions per second for o.steadyDuration and
// measures commit → consumer-receive latency.
func steady(ctx context.Context, o options, s *system, pool *pgxpool.Pool, js jetstream.JetStream) (*SteadyResult, error) {
	const topic = "steady"
	total := int(float64(o.steadyRate) * o.steadyDuration.Seconds())
	if err := s.createSlot(ctx, o, pool); err != nil {
		return nil, err
	}
	defer dropSlot(s, pool)
	p, err := startRelay(o, s)
	if err != nil {
		return nil, err
	}
	defer s.stopRelay(p) //nolint:errcheck // cleanup: the steady result counts what arrived (Missing), not the relay's exit
	col := newCollector(time.Now(), total, 0)
	stop, err := consume(ctx, js, s.Stream, s.Prefix+topic, col)
	if err != nil {
		return nil, err
	}
	defer stop()
	psi0 := cpuPressure()
	if err := p.Go(); err != nil {
		return nil, err
	}

	commits := make([]int64, total)
	interval := time.Second / time.Duration(o.steadyRate)
	begin := time.Now().Add(100 * time.Millisecond)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	for range o.steadyWorkers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= total || ctx.Err() != nil {
					return
				}
				time.Sleep(time.Until(begin.Add(time.Duration(i) * interval)))
				m := newMsg(i, 100)
				err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return s.enqueue(ctx, tx, topic, []benchMsg{m}) })
				if err != nil {
					errMu.Lock()
					firstErr = cmpErr(firstErr, err)
					errMu.Unlock()
					return
				}
				commits[i] = col.now()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, fmt.Errorf("producing: %w", firstErr)
	}
	lastCommit := time.Now()
	wait(ctx, &col.distinct, int64(total), 60*time.Second)
	u, err := p.Usage()
	if err != nil {
		return nil, err
	}
	r := &SteadyResult{Sent: total, AchievedRate: float64(total) / lastCommit.Sub(begin).Seconds(),
		CPUPercent: u.CPUPercent(), PeakRSSMB: u.PeakRSSMB, Duplicates: col.dups.Load(),
		CPUPressure: pressureSince(psi0, u.Wall)}
	lat := make([]time.Duration, 0, total)
	for i := range total {
		at := col.recv[i].Load()
		if at == 0 {
			r.Missing++
			continue
		}
		lat = append(lat, time.Duration(max(0, at-commits[i])))
	}
	r.P50ms, r.P99ms, r.Maxms = pct(lat, 0.50), pct(lat, 0.99), pct(lat, 1)
	return r, nil
}

// dropSlot drops a WAL system's slot at the end of a workload (after its relay stopped: the
// deferred stopRelay runs first).
func dropSlot(s *system, pool *pgxpool.Pool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.dropSlot(ctx, pool); err != nil {
		log.Printf("dropping slot %s: %v", s.Slot, err)
	}
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// idle commits single messages after 200–600 ms of silence and measures each one's
// commit → consumer-receive latency.
func idle(ctx context.Context, o options, s *system, pool *pgxpool.Pool, js jetstream.JetStream) (*IdleResult, error) {
	const topic = "idle"
	if err := s.createSlot(ctx, o, pool); err != nil {
		return nil, err
	}
	defer dropSlot(s, pool)
	p, err := startRelay(o, s)
	if err != nil {
		return nil, err
	}
	defer s.stopRelay(p) //nolint:errcheck // cleanup: the idle result counts what arrived (Missing), not the relay's exit
	n := o.idleSamples
	col := newCollector(time.Now(), n+1, 0) // seq n: the warm-up message
	stop, err := consume(ctx, js, s.Stream, s.Prefix+topic, col)
	if err != nil {
		return nil, err
	}
	defer stop()
	psi0 := cpuPressure()
	if err := p.Go(); err != nil {
		return nil, err
	}
	// One warm-up message, so that no sample pays for first-use work (statement preparation,
	// connection setup) in either system.
	warm := newMsg(n, 1)
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return s.enqueue(ctx, tx, topic, []benchMsg{warm}) }); err != nil {
		return nil, err
	}
	if !wait(ctx, &col.distinct, 1, 10*time.Second) {
		return nil, fmt.Errorf("warm-up message not received within 10s")
	}
	rng := rand.New(rand.NewPCG(42, 7)) // the same gaps for every system
	r := &IdleResult{Samples: n}
	var lat []time.Duration
	for i := range n {
		time.Sleep(200*time.Millisecond + time.Duration(rng.Int64N(int64(400*time.Millisecond))))
		m := newMsg(i, 1)
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return s.enqueue(ctx, tx, topic, []benchMsg{m}) }); err != nil {
			return nil, err
		}
		committed := col.now()
		deadline := time.Now().Add(5 * time.Second)
		for col.recv[i].Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(200 * time.Microsecond)
		}
		at := col.recv[i].Load()
		if at == 0 {
			r.Missing++
			continue
		}
		lat = append(lat, time.Duration(max(0, at-committed)))
	}
	u, err := p.Usage()
	if err != nil {
		return nil, err
	}
	r.CPUPercent, r.PeakRSSMB, r.CPUPressure = u.CPUPercent(), u.PeakRSSMB, pressureSince(psi0, u.Wall)
	r.P50ms, r.Maxms = pct(lat, 0.5), pct(lat, 1)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	if len(lat) > 0 {
		r.Meanms = float64(sum) / float64(len(lat)) / 1e6
	}
	return r, nil
}

// overhead times transactions of one business INSERT plus each system's enqueue, and of the
// INSERT alone, interleaved round-robin on one connection with no relay running, so that
// every variant sees the same machine noise.
func overhead(ctx context.Context, o options, syss []*system, plainSchema string, pool *pgxpool.Pool) (plain *OverheadResult, per map[string]*OverheadResult, err error) {
	const topic = "overhead"
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Release()
	variants := append([]*system{nil}, syss...) // nil: the plain INSERT
	times := make([][]time.Duration, len(variants))
	const warmup = 50
	for i := range warmup + o.overheadTx {
		for v, s := range variants {
			schema := plainSchema
			if s != nil {
				schema = s.Schema
			}
			m := newMsg(i, 1000)
			t0 := time.Now()
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `INSERT INTO "`+schema+`".orders (customer, amount_cents) VALUES ($1, $2)`, "c-42", 4200); err != nil {
					return err
				}
				if s == nil {
					return nil
				}
				return s.enqueue(ctx, tx, topic, []benchMsg{m})
			})
			d := time.Since(t0)
			if err != nil {
				return nil, nil, err
			}
			if i >= warmup {
				times[v] = append(times[v], d)
			}
		}
	}
	summary := func(ts []time.Duration) *OverheadResult {
		var sum time.Duration
		for _, t := range ts {
			sum += t
		}
		return &OverheadResult{Tx: len(ts), MeanUS: float64(sum) / float64(len(ts)) / 1e3,
			P50US: pct(ts, 0.5) * 1e3, P99US: pct(ts, 0.99) * 1e3}
	}
	plain = summary(times[0])
	per = map[string]*OverheadResult{}
	for v, s := range variants[1:] {
		r := summary(times[v+1])
		r.OverheadUS = r.MeanUS - plain.MeanUS
		per[s.ID] = r
	}
	return plain, per, nil
}

// pct returns the p-quantile of ds in milliseconds (sorting ds).
func pct(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return float64(ds[int(p*float64(len(ds)-1))]) / 1e6
}

// cpuPressure returns the machine's cumulative PSI "some" CPU stall time in microseconds
// (/proc/pressure/cpu), or -1 when unavailable. It shows how much tasks waited for a CPU:
// on this shared machine, a measure of contention during a window (ours included).
func cpuPressure() int64 {
	raw, err := os.ReadFile("/proc/pressure/cpu")
	if err != nil {
		return -1
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	_, v, ok := strings.Cut(line, "total=")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// pressureSince is the share of the window, in percent, in which some task waited for a CPU.
func pressureSince(start int64, window time.Duration) float64 {
	end := cpuPressure()
	if start < 0 || end < 0 || window <= 0 {
		return -1
	}
	return 100 * float64(end-start) / float64(window.Microseconds())
}
