package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Results is everything one run measured, with the machine it ran on.
type Results struct {
	Date        string
	Command     string
	Machine     string
	Go          string
	PostgreSQL  string
	NATS        string
	LoadBefore  string
	LoadAfter   string
	DurationSec float64
	Options     map[string]string
	Systems     []*SystemResult
	Plain       *OverheadResult
}

// SystemResult is one system's figures; workloads it did not run are nil.
type SystemResult struct {
	ID, Label, Knobs string
	DrainOnly        bool
	Drain            *DrainResult
	Idle             *IdleResult
	Steady           *SteadyResult
	Overhead         *OverheadResult
	// Sent counts the broker-acknowledged sends of all this system's relays per workload
	// topic; Committed the messages committed. Sent above Committed means re-sends (JetStream
	// dropped them as duplicates within its dedupe window, so consumers did not see them).
	Sent, Committed map[string]int64
}

func orchestrate(ctx context.Context, o options) error {
	t0 := time.Now()
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	run := hex.EncodeToString(rnd[:])

	pcfg, err := pgxpool.ParseConfig(o.databaseURL)
	if err != nil {
		return err
	}
	pcfg.MaxConns = int32(o.steadyWorkers + 8)
	pcfg.ConnConfig.RuntimeParams["application_name"] = "sidebyside_" + run
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	nc, err := natsgo.Connect(o.natsURL, natsgo.Name("sidebyside"))
	if err != nil {
		return fmt.Errorf("connecting to NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	syss, err := systems(o, run)
	if err != nil {
		return err
	}
	res := &Results{
		Date:       t0.UTC().Format("2006-01-02 15:04 UTC"),
		Command:    "go run ./cmd/sidebyside " + strings.Join(os.Args[1:], " "),
		Machine:    machine(),
		Go:         runtime.Version(),
		NATS:       nc.ConnectedServerVersion(),
		LoadBefore: loadavg(),
		Options: map[string]string{
			"messages": fmt.Sprint(o.messages), "drain_keys": fmt.Sprint(o.drainKeys),
			"steady_rate": fmt.Sprint(o.steadyRate), "steady_duration": o.steadyDuration.String(),
			"steady_producers": fmt.Sprint(o.steadyWorkers), "idle_samples": fmt.Sprint(o.idleSamples),
			"overhead_tx": fmt.Sprint(o.overheadTx),
		},
	}
	_ = pool.QueryRow(ctx, `SELECT split_part(version(), ' on ', 1) || ', synchronous_commit=' || current_setting('synchronous_commit')`).Scan(&res.PostgreSQL)

	plainSchema := "sbs_" + run + "_plain"
	cleanup := func() {
		if o.keep {
			log.Printf("keeping schemas sbs_%s_* and streams SBS_%s_*", run, run)
			return
		}
		cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, err := pool.Exec(cctx, `DROP SCHEMA IF EXISTS "`+plainSchema+`" CASCADE`); err != nil {
			log.Printf("dropping %s: %v", plainSchema, err)
		}
		for _, s := range syss {
			if err := s.teardown(cctx, pool, js); err != nil {
				log.Printf("tearing down %s: %v", s.ID, err)
			}
		}
	}
	defer cleanup()
	if _, err := pool.Exec(ctx, `CREATE SCHEMA "`+plainSchema+`"`); err != nil {
		return err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE "`+plainSchema+`".orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		customer text NOT NULL, amount_cents integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return err
	}
	byID := map[string]*SystemResult{}
	for _, s := range syss {
		if err := s.setup(ctx, pool, js); err != nil {
			return fmt.Errorf("setting up %s: %w", s.ID, err)
		}
		sr := &SystemResult{ID: s.ID, Label: s.Label, Knobs: s.Knobs(), DrainOnly: s.DrainOnly}
		res.Systems = append(res.Systems, sr)
		byID[s.ID] = sr
	}
	var main []*system
	for _, s := range syss {
		if !s.DrainOnly {
			main = append(main, s)
		}
	}

	want := func(w string) bool { return contains(strings.Split(o.workloads, ","), w) }
	for _, s := range syss {
		if !want("drain") {
			break
		}
		log.Printf("drain %s: %d messages", s.ID, o.messages)
		r, err := drain(ctx, o, s, pool, js)
		if err != nil {
			return fmt.Errorf("drain %s: %w", s.ID, err)
		}
		log.Printf("drain %s: %.0f events/s in %.2fs (complete %v), relay CPU %.2fs, peak RSS %.1f MiB, received %d, dups %d, order violations %d, rows left %d, CPU pressure %.0f%%",
			s.ID, r.EventsPerSec, r.Seconds, r.Complete, r.CPUSeconds, r.PeakRSSMB, r.Received, r.Duplicates, r.OrderViolations, r.RowsLeft, r.CPUPressure)
		byID[s.ID].Drain = r
	}
	for _, s := range main {
		if !want("idle") {
			break
		}
		log.Printf("idle %s: %d samples", s.ID, o.idleSamples)
		r, err := idle(ctx, o, s, pool, js)
		if err != nil {
			return fmt.Errorf("idle %s: %w", s.ID, err)
		}
		log.Printf("idle %s: p50 %.2f ms, max %.2f ms, missing %d, relay CPU %.1f%%, CPU pressure %.0f%%", s.ID, r.P50ms, r.Maxms, r.Missing, r.CPUPercent, r.CPUPressure)
		byID[s.ID].Idle = r
	}
	for _, s := range main {
		if !want("steady") {
			break
		}
		log.Printf("steady %s: %d/s for %v", s.ID, o.steadyRate, o.steadyDuration)
		r, err := steady(ctx, o, s, pool, js)
		if err != nil {
			return fmt.Errorf("steady %s: %w", s.ID, err)
		}
		log.Printf("steady %s: %.0f/s, p50 %.2f ms, p99 %.2f ms, max %.2f ms, missing %d, dups %d, relay CPU %.1f%%, peak RSS %.1f MiB, CPU pressure %.0f%%",
			s.ID, r.AchievedRate, r.P50ms, r.P99ms, r.Maxms, r.Missing, r.Duplicates, r.CPUPercent, r.PeakRSSMB, r.CPUPressure)
		byID[s.ID].Steady = r
	}
	if want("overhead") {
		log.Printf("producer overhead: %d transactions per variant", o.overheadTx)
		plain, per, err := overhead(ctx, o, main, plainSchema, pool)
		if err != nil {
			return fmt.Errorf("overhead: %w", err)
		}
		res.Plain = plain
		log.Printf("overhead plain: mean %.0f µs, p50 %.0f µs", plain.MeanUS, plain.P50US)
		for id, r := range per {
			byID[id].Overhead = r
			log.Printf("overhead %s: mean %.0f µs (%+.0f), p50 %.0f µs", id, r.MeanUS, r.OverheadUS, r.P50US)
		}
	}
	for _, s := range syss {
		sr := byID[s.ID]
		sr.Sent = s.sent
		sr.Committed = map[string]int64{}
		if sr.Drain != nil {
			sr.Committed["drain"] = int64(sr.Drain.Messages)
		}
		if sr.Idle != nil {
			sr.Committed["idle"] = int64(sr.Idle.Samples) + 1 // and the warm-up message
		}
		if sr.Steady != nil {
			sr.Committed["steady"] = int64(sr.Steady.Sent)
		}
	}
	res.LoadAfter = loadavg()
	res.DurationSec = time.Since(t0).Seconds()

	if o.jsonOut != "" {
		raw, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(o.jsonOut, raw, 0o644); err != nil {
			return err
		}
	}
	return output(o, res)
}

// render writes the outputs of a saved run (--from-json).
func render(o options) error {
	raw, err := os.ReadFile(o.fromJSON)
	if err != nil {
		return err
	}
	var res Results
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("reading %s: %w", o.fromJSON, err)
	}
	return output(o, &res)
}

// output writes the Markdown section and the chart.
func output(o options, res *Results) error {
	md := markdown(res)
	if o.out == "" || o.out == "-" {
		fmt.Print(md)
	} else if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		return err
	}
	if o.chart != "" {
		if err := chart(res, o.chart); err != nil {
			return fmt.Errorf("drawing chart: %w", err)
		}
	}
	return nil
}

func machine() string {
	cpu := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(raw), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if raw, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		_, _ = fmt.Sscanf(strings.SplitN(string(raw), "\n", 2)[0], "MemTotal: %d kB", &kb) // unparsed: kb stays 0
		mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("%d vCPU (%s)%s, Linux %s", runtime.NumCPU(), cpu, mem, strings.TrimSpace(string(kernel)))
}

func loadavg() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(raw))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
