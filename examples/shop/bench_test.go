package main

import (
	"context"
	"flag"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
)

var (
	benchListings    = flag.Int("listings", 2000, "BenchmarkSearchVisibility: listings created")
	benchRate        = flag.Int("rate", 200, "BenchmarkSearchVisibility: listings per second")
	benchDatabaseURL = flag.String("database-url", "", "BenchmarkSearchVisibility: PostgreSQL URL (schemas shop_inventory, shop_search) instead of SQLite files")
	benchNATSURL     = flag.String("nats-url", "", "BenchmarkSearchVisibility: NATS server instead of one in the test process")
)

// BenchmarkSearchVisibility creates -listings listings at -rate per second through the
// inventory service (listen to yourself, its self-consumer running) and awaits each until
// the search service finds it: the latency from the creation's commit to the search that
// found it. Each iteration is one whole run; use -benchtime 1x.
//
//	go test -run '^$' -bench SearchVisibility -benchtime 1x ./examples/shop
func BenchmarkSearchVisibility(b *testing.B) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	natsURL := *benchNATSURL
	if natsURL == "" {
		natsURL = newNATS(b).url()
	}
	if err := ensureStream(ctx, natsURL); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	id, err := openDatabase(ctx, "inventory", filepath.Join(dir, "inventory.db"), *benchDatabaseURL, true, logger)
	if err != nil {
		b.Fatal(err)
	}
	defer id.close()
	sd, err := openDatabase(ctx, "search", filepath.Join(dir, "search.db"), *benchDatabaseURL, false, logger)
	if err != nil {
		b.Fatal(err)
	}
	defer sd.close()
	inv, err := NewInventory(ctx, id, logger)
	if err != nil {
		b.Fatal(err)
	}
	watch := newIndexWatch()
	search, err := NewSearch(ctx, sd, logger, watch)
	if err != nil {
		b.Fatal(err)
	}
	// A tap on the stream: when each event reached the broker (its ce-id header).
	published := map[string]time.Time{}
	var pubMu sync.Mutex
	nc, err := natsgo.Connect(natsURL)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Subscribe(subjectPrefix+topicListingCreated, func(m *natsgo.Msg) {
		pubMu.Lock()
		published[m.Header.Get("ce-id")] = time.Now()
		pubMu.Unlock()
	}); err != nil {
		b.Fatal(err)
	}
	services := newGroup(ctx, logger)
	defer services.stop()
	services.start("inventory relay", func(ctx context.Context) error { return runRelay(ctx, id, natsURL, "shop-inventory", logger) })
	services.start("inventory self-consumer", func(ctx context.Context) error { return inv.ConsumeOwn(ctx, natsURL) })
	services.start("search", func(ctx context.Context) error { return search.Consume(ctx, natsURL) })
	// Warm up: the consumers are created and the first listing goes through.
	if _, err := measureVisibility(ctx, inv, search, watch, 1, 1, 30*time.Second); err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	var last visibility
	for b.Loop() {
		v, err := measureVisibility(ctx, inv, search, watch, *benchListings, *benchRate, 30*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		if v.readMiss > 0 {
			b.Fatalf("%d GETs right after their POST missed the listing", v.readMiss)
		}
		last = v
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(last.percentile(0.5)), "p50-ms")
	b.ReportMetric(ms(last.percentile(0.99)), "p99-ms")
	b.ReportMetric(ms(last.percentile(1)), "max-ms")
	b.ReportMetric(float64(len(last.latencies)), "listings")
	// Where the time goes: commit → published (relay), → indexed (search's inbox commit).
	var toPub, toIndex []time.Duration
	pubMu.Lock()
	for _, s := range last.samples {
		if t, ok := published[s.event]; ok {
			toPub = append(toPub, t.Sub(s.committed))
		}
		if t, ok := watch.handledAt(s.event); ok {
			toIndex = append(toIndex, t.Sub(s.committed))
		}
	}
	pubMu.Unlock()
	slices.Sort(toPub)
	slices.Sort(toIndex)
	b.ReportMetric(ms(percentile(toPub, 0.5)), "p50-published-ms")
	b.ReportMetric(ms(percentile(toPub, 0.99)), "p99-published-ms")
	b.ReportMetric(ms(percentile(toIndex, 0.5)), "p50-indexed-ms")
	b.ReportMetric(ms(percentile(toIndex, 0.99)), "p99-indexed-ms")
	b.ReportMetric(0, "ns/op")
}
