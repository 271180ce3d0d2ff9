package producers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
)

var (
	flagRounds    = flag.Int("rounds", 3, "rounds: each runs every producers × system pair once, systems in a rotated order")
	flagProducers = flag.String("producers", "1,8,32", "comma-separated numbers of concurrent producers")
	flagSystems   = flag.String("systems", "", "comma-separated system ids to run (default all: plain,outbox,wm-offsets,wm-queue; PostgreSQL also outbox-v5)")
	flagRelay     = flag.Bool("relay", true, "PostgreSQL: run this project's relay (poll source, default settings, a sink that discards) on the plain and outbox tables, and Watermill's forwarder on its tables, while they are measured, as a deployment does: they drain the rows, and this project's relay decides whether commits notify")
	flagKeep      = flag.Bool("keep", false, "keep the schemas (PostgreSQL) and databases (MySQL) afterwards")
	flagPG        = flag.String("pg-url", envOr("OUTBOX_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"), "PostgreSQL URL")
	flagMySQL     = flag.String("mysql-dsn", envOr("OUTBOX_TEST_MYSQL_DSN", "root@tcp(127.0.0.1:3306)/test"), "MariaDB/MySQL DSN (go-sql-driver/mysql)")
	flagInterp    = flag.Bool("mysql-interpolate", true, "MySQL: set interpolateParams=true on the DSN (one round trip per statement instead of prepare, execute, close), for every system alike")
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Every message is the side-by-side's: a ~90-byte JSON payload and a key out of 1,000.
const topic = "orders.created"

func key(seq int) string { return "k" + strconv.Itoa(seq%1000) }

func payload(seq int) []byte {
	return fmt.Appendf(nil, `{"seq":%d,"order_id":"o-%010d","customer":"c-42","amount_cents":4200,"currency":"EUR"}`, seq, seq)
}

func customer(seq int) string { return "c-" + strconv.Itoa(seq%1000) }

// system is one way of producing: tx runs one transaction (business INSERT + enqueue, commit).
type system struct {
	id    string
	label string
	notes string // what was measured, as found at run time (triggers, schema)
	tx    func(ctx context.Context, seq int) error
	reset func(ctx context.Context) error // empties the tables between runs, outside the timer
	stop  func() error                    // stops what runs beside it (a relay), if anything
	// The outbox system on PostgreSQL, for the latency measurement.
	sink        *latencySink
	writer      *outbox.Writer
	insertOrder string
}

// systemIDs is every system id in report order.
var systemIDs = []string{"plain", "outbox", "wm-offsets", "wm-queue"}

// pgSystemIDs adds, on PostgreSQL, outbox-v5: the outbox system with the schema of migrations
// 1–5, whose trigger notifies every commit (the wake-up before migration 6), for the before
// and after in one run.
var pgSystemIDs = []string{"plain", "outbox", "outbox-v5", "wm-offsets", "wm-queue"}

// wanted reports whether --systems selects id.
func wanted(id string) bool {
	if *flagSystems == "" {
		return true
	}
	for _, s := range strings.Split(*flagSystems, ",") {
		if strings.TrimSpace(s) == id {
			return true
		}
	}
	return false
}

func producerCounts(b *testing.B) []int {
	var out []int
	for _, f := range strings.Split(*flagProducers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("-producers: bad count %q", f)
		}
		out = append(out, n)
	}
	return out
}

func maxProducers(b *testing.B) int { return slices.Max(producerCounts(b)) }

// runID names this run's schemas or databases.
func runID() string {
	var r [3]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

type result struct {
	msgsPerSec float64
	p50, p99   time.Duration
	n          int
}

// runProducers commits b.N transactions of s from producers goroutines that share them.
func runProducers(b *testing.B, s *system, producers int) result {
	ctx := context.Background()
	if err := s.reset(ctx); err != nil {
		b.Fatalf("resetting %s: %v", s.id, err)
	}
	var (
		next   atomic.Int64
		failed atomic.Bool
		wg     sync.WaitGroup
		lat    = make([][]time.Duration, producers)
	)
	// Two warm-up transactions per producer (statement caches, pool), outside the timer.
	for g := range producers {
		wg.Go(func() {
			for i := range 2 {
				if err := s.tx(ctx, -1-g*2-i); err != nil && failed.CompareAndSwap(false, true) {
					b.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		b.FailNow()
	}
	b.ResetTimer()
	for g := range producers {
		wg.Go(func() {
			for !failed.Load() {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				if err := s.tx(ctx, int(i)); err != nil {
					if failed.CompareAndSwap(false, true) {
						b.Error(err)
					}
					return
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if failed.Load() {
		b.FailNow()
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	r := result{msgsPerSec: float64(b.N) / b.Elapsed().Seconds(), n: b.N}
	if len(all) > 0 {
		r.p50, r.p99 = all[len(all)/2], all[min(len(all)-1, len(all)*99/100)]
	}
	b.ReportMetric(r.msgsPerSec, "msgs/s")
	b.ReportMetric(float64(r.p50.Microseconds()), "p50-µs/tx")
	b.ReportMetric(float64(r.p99.Microseconds()), "p99-µs/tx")
	return r
}

type resultKey struct {
	round, producers int
	system           string
}

// bench runs every round × producers × system as a sub-benchmark, rotating the systems'
// order from one round (and producer count) to the next so drift spreads over all of them,
// then prints the summary.
func bench(b *testing.B, database string, systems []*system) {
	if len(systems) == 0 {
		b.Skip("-systems selects none")
	}
	ps := producerCounts(b)
	results := map[resultKey]result{}
	for r := 1; r <= *flagRounds; r++ {
		for pi, p := range ps {
			shift := (r - 1 + pi) % len(systems)
			order := slices.Concat(systems[shift:], systems[:shift])
			for _, s := range order {
				b.Run(fmt.Sprintf("round=%d/producers=%d/system=%s", r, p, s.id), func(b *testing.B) {
					// The last call is the measured one (the earlier ones size b.N).
					results[resultKey{r, p, s.id}] = runProducers(b, s, p)
				})
			}
		}
	}
	summary(os.Stdout, database, systems, ps, results)
}

// summary prints, per producer count, each system's median msgs/s over the rounds and its
// ratio to plain (the median of the rounds' paired ratios), and the outbox against the best
// Watermill variant.
func summary(w io.Writer, database string, systems []*system, ps []int, results map[resultKey]result) {
	rounds := *flagRounds
	fmt.Fprintf(w, "\nProducers on %s: commits/s (one message per transaction), median of %d round(s) (min–max); "+
		"× = median of the rounds' ratios to plain; p50 = median transaction time\n\n", database, rounds)
	for _, s := range systems {
		fmt.Fprintf(w, "- %s: %s", s.id, s.label)
		if s.notes != "" {
			fmt.Fprintf(w, "; %s", s.notes)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	header := "| producers |"
	sep := "|---|"
	for _, s := range systems {
		header += " " + s.id + " |"
		sep += "---|"
	}
	hasOutbox := slices.ContainsFunc(systems, func(s *system) bool { return s.id == "outbox" })
	hasWM := slices.ContainsFunc(systems, func(s *system) bool { return strings.HasPrefix(s.id, "wm-") })
	if hasOutbox && hasWM {
		header += " outbox / best Watermill |"
		sep += "---|"
	}
	fmt.Fprintln(w, header)
	fmt.Fprintln(w, sep)
	for _, p := range ps {
		row := fmt.Sprintf("| %d |", p)
		medians := map[string]float64{}
		for _, s := range systems {
			var v, ratios []float64
			var p50s []float64
			for r := 1; r <= rounds; r++ {
				res, ok := results[resultKey{r, p, s.id}]
				if !ok {
					continue
				}
				v = append(v, res.msgsPerSec)
				p50s = append(p50s, float64(res.p50.Microseconds()))
				if plain, ok := results[resultKey{r, p, "plain"}]; ok && s.id != "plain" {
					ratios = append(ratios, res.msgsPerSec/plain.msgsPerSec)
				}
			}
			if len(v) == 0 {
				row += " – |"
				continue
			}
			medians[s.id] = median(v)
			cell := fmt.Sprintf(" %.0f", median(v))
			if len(v) > 1 {
				cell += fmt.Sprintf(" (%.0f–%.0f)", slices.Min(v), slices.Max(v))
			}
			if len(ratios) > 0 {
				cell += fmt.Sprintf(" **%.2f×**", median(ratios))
			}
			cell += fmt.Sprintf(", p50 %.0f µs", median(p50s))
			row += cell + " |"
		}
		if hasOutbox && hasWM {
			best, bestID := 0.0, ""
			for id, m := range medians {
				if strings.HasPrefix(id, "wm-") && m > best {
					best, bestID = m, id
				}
			}
			if o, ok := medians["outbox"]; ok && best > 0 {
				row += fmt.Sprintf(" %.2f× (%s) |", o/best, bestID)
			} else {
				row += " – |"
			}
		}
		fmt.Fprintln(w, row)
	}
	fmt.Fprintln(w)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
