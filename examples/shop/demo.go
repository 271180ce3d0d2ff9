package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/outboxgo/outbox/listen"
)

// demoOptions are the demo's flags.
type demoOptions struct {
	dir         string
	databaseURL string
	natsURL     string
	listings    int
	rate        int
	verbose     bool
}

// runDemo runs the four services in this process and drives both flows.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	var o demoOptions
	fs.StringVar(&o.dir, "dir", "", "keep the SQLite files and JetStream store here (default: a temporary directory, removed at exit)")
	fs.StringVar(&o.databaseURL, "database-url", "", "PostgreSQL URL instead of SQLite files: schemas shop_gateway, shop_oms, shop_inventory, shop_search")
	fs.StringVar(&o.natsURL, "nats-url", "", "NATS server with JetStream (default: one in this process)")
	fs.IntVar(&o.listings, "listings", 400, "listings created to measure search visibility")
	fs.IntVar(&o.rate, "rate", 200, "listings per second")
	fs.BoolVar(&o.verbose, "verbose", false, "log at INFO")
	if err := parse(fs, args); err != nil {
		return err
	}
	if o.listings < 0 || o.rate < 1 {
		return usageError{"--listings must be >= 0 and --rate >= 1"}
	}
	logger := newLogger(stderr, o.verbose)
	out := &printer{w: stdout}

	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "shop-"); err != nil {
			return err
		}
		defer os.RemoveAll(o.dir)
	} else if err := os.MkdirAll(o.dir, 0o750); err != nil {
		return err
	}
	natsURL := o.natsURL
	if natsURL == "" {
		ns, err := startNATS(filepath.Join(o.dir, "nats"), 0)
		if err != nil {
			return err
		}
		defer ns.Shutdown()
		natsURL = ns.ClientURL()
	}
	if err := ensureStream(ctx, natsURL); err != nil {
		return err
	}
	where := "SQLite files in " + o.dir
	if o.databaseURL != "" {
		where = "PostgreSQL, one schema per service"
	}
	out.printf("shop: two dual-write flows on the transactional outbox\n  databases  %s\n  broker     NATS JetStream %s, stream %s\n\n", where, natsURL, streamName)

	open := func(service string, withOutbox bool) (*database, error) {
		return openDatabase(ctx, service, filepath.Join(o.dir, service+".db"), o.databaseURL, withOutbox, logger)
	}

	failures, err := demoOrderPaid(ctx, out, open, natsURL, logger)
	if err != nil {
		return err
	}
	f2, err := demoListingCreated(ctx, out, open, natsURL, o, logger)
	if err != nil {
		return err
	}
	failures = append(failures, f2...)
	if len(failures) > 0 {
		for _, f := range failures {
			out.printf("FAILED: %s\n", f)
		}
		return fmt.Errorf("%d check(s) failed", len(failures))
	}
	out.printf("\nAll checks passed.\n")
	return nil
}

// printer serialises the demo's lines.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

// opener opens a service's database.
type opener func(service string, withOutbox bool) (*database, error)

// group runs a flow's services until stop, which waits for them to end.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	log    *slog.Logger
}

func newGroup(ctx context.Context, logger *slog.Logger) *group {
	g := &group{log: logger}
	g.ctx, g.cancel = context.WithCancel(ctx)
	return g
}

// start runs f in the group, logging its error unless the group was stopped.
func (g *group) start(name string, f func(context.Context) error) {
	g.wg.Go(func() {
		if err := f(g.ctx); err != nil && g.ctx.Err() == nil {
			g.log.Error(name+" stopped", "error", err)
		}
	})
}

func (g *group) stop() {
	g.cancel()
	g.wg.Wait()
}

// demoOrderPaid is flow (a): orders paid at the gateway reach packing; the gateway
// "crashes" right after committing one payment and the order still reaches packing once
// the gateway is back.
func demoOrderPaid(ctx context.Context, out *printer, open opener, natsURL string, logger *slog.Logger) ([]string, error) {
	out.printf("== Flow 1: payment gateway → order management, \"order paid\"\n")
	gd, err := open("gateway", true)
	if err != nil {
		return nil, err
	}
	defer gd.close()
	od, err := open("oms", false)
	if err != nil {
		return nil, err
	}
	defer od.close()
	gw, err := NewGateway(ctx, gd, logger)
	if err != nil {
		return nil, err
	}
	oms, err := NewOMS(ctx, od, logger)
	if err != nil {
		return nil, err
	}
	changed := make(chan string, 16)
	oms.onChange = func(id, from, to string) {
		out.printf("  oms      %s: %s → %s\n", id, from, to)
		changed <- id
	}
	services := newGroup(ctx, logger)
	defer services.stop() // before the databases close
	services.start("oms", func(ctx context.Context) error { return oms.Consume(ctx, natsURL) })
	// The gateway's relay runs in a group of its own: stopping it is the gateway's crash.
	gateway := newGroup(ctx, logger)
	defer func() { gateway.stop() }()
	gateway.start("gateway relay", func(ctx context.Context) error { return runRelay(ctx, gd, natsURL, "shop-gateway", logger) })

	type step struct {
		customer string
		total    int64
		card     string // "" leaves the order unpaid
		crash    bool
	}
	steps := []step{
		{"ada", 4200, "4242424242424242", false},
		{"grace", 1999, "4242424242424242", false},
		{"linus", 7350, "4242424242424242", true},
		{"barbara", 1250, declinedCard, false},
		{"ken", 3000, "", false},
	}
	var failures []string
	orders := make([]Order, len(steps))
	for i, s := range steps {
		ord, err := oms.Place(ctx, s.customer, s.total)
		if err != nil {
			return nil, err
		}
		orders[i] = ord
		out.printf("  oms      %s placed by %s for %.2f: %s\n", ord.ID, s.customer, float64(s.total)/100, ord.Status)
		if s.card == "" {
			out.printf("  (%s is never paid)\n", ord.ID)
			continue
		}
		if s.crash {
			// The gateway's process dies with this commit: its relay, stopped as the commit
			// starts, never sees it. (The gateway subcommand's --crash-after-commit
			// SIGKILLs itself.)
			gw.beforeCommit = func(Payment) { gateway.cancel() }
			gw.afterCommit = func(Payment) { gateway.wg.Wait() }
		}
		p, _, err := gw.Pay(ctx, ord.ID, s.total, s.card)
		if err != nil {
			return nil, err
		}
		out.printf("  gateway  payment %s for %s: %s (payment row + outbox event, one transaction)\n", p.ID[24:], ord.ID, p.Status)
		if !s.crash {
			if err := waitFor(ctx, changed, ord.ID, 10*time.Second); err != nil {
				failures = append(failures, fmt.Sprintf("%s did not move on: %v", ord.ID, err))
			}
			continue
		}
		gw.beforeCommit, gw.afterCommit = nil, nil
		pending, err := pendingOutbox(ctx, gd)
		if err != nil {
			return nil, err
		}
		out.printf("  gateway  CRASHED right after that commit, its relay with it: %d event(s) left in its outbox\n", pending)
		if o, err := oms.Order(ctx, ord.ID); err == nil {
			out.printf("  oms      %s is %s (with a dual write, the OMS would never hear of this payment)\n", ord.ID, o.Status)
		}
		time.Sleep(500 * time.Millisecond)
		out.printf("  gateway  restarted: its relay publishes what the outbox holds\n")
		gateway = newGroup(ctx, logger)
		gateway.start("gateway relay", func(ctx context.Context) error { return runRelay(ctx, gd, natsURL, "shop-gateway", logger) })
		if err := waitFor(ctx, changed, ord.ID, 10*time.Second); err != nil {
			failures = append(failures, fmt.Sprintf("%s did not reach packing after the gateway's restart: %v", ord.ID, err))
		}
	}
	// A late duplicate of a payment (a client retry) changes nothing.
	if _, replay, err := gw.Pay(ctx, orders[0].ID, steps[0].total, steps[0].card); err != nil {
		return nil, err
	} else if replay {
		out.printf("  gateway  a retried payment of %s returns the first one: nothing new is enqueued\n", orders[0].ID)
	}
	time.Sleep(300 * time.Millisecond)
	out.printf("  final:")
	for i, ord := range orders {
		got, err := oms.Order(ctx, ord.ID)
		if err != nil {
			return nil, err
		}
		want := statusPacking
		switch {
		case steps[i].card == "":
			want = statusAwaitingPayment
		case steps[i].card == declinedCard:
			want = statusPaymentFailed
		}
		out.printf(" %s=%s", ord.ID, got.Status)
		if got.Status != want {
			failures = append(failures, fmt.Sprintf("%s is %s, want %s", ord.ID, got.Status, want))
		}
	}
	out.printf("\n")
	var twice int
	if err := od.db.QueryRowContext(ctx, `SELECT count(*) FROM (SELECT order_id FROM order_history WHERE status = 'packing' GROUP BY order_id HAVING count(*) > 1) t`).Scan(&twice); err != nil {
		return nil, err
	}
	if twice > 0 {
		failures = append(failures, fmt.Sprintf("%d order(s) entered packing twice", twice))
	}
	if len(failures) == 0 {
		out.printf("  every paid order is packing, exactly once; the declined and the unpaid ones are not\n")
	}
	out.printf("\n")
	return failures, nil
}

// pendingOutbox is how many events the gateway's outbox holds unpublished.
func pendingOutbox(ctx context.Context, d *database) (int64, error) {
	st, err := d.outbox.Stats(ctx)
	if err != nil {
		return 0, err
	}
	return st.Pending, nil
}

// waitFor waits until id comes out of changed.
func waitFor(ctx context.Context, changed <-chan string, id string, maxWait time.Duration) error {
	t := time.NewTimer(maxWait)
	defer t.Stop()
	for {
		select {
		case got := <-changed:
			if got == id {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("not within %v", maxWait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// demoListingCreated is flow (b): the seller reads a new listing back at once although the
// inventory's table is written only by its own consumer, and the search service indexes
// every listing; then the visibility latency at the given rate.
func demoListingCreated(ctx context.Context, out *printer, open opener, natsURL string, o demoOptions, logger *slog.Logger) ([]string, error) {
	out.printf("== Flow 2: inventory → search, \"listing created\"\n")
	id, err := open("inventory", true)
	if err != nil {
		return nil, err
	}
	defer id.close()
	sd, err := open("search", false)
	if err != nil {
		return nil, err
	}
	defer sd.close()
	inv, err := NewInventory(ctx, id, logger)
	if err != nil {
		return nil, err
	}
	watch := newIndexWatch()
	search, err := NewSearch(ctx, sd, logger, watch)
	if err != nil {
		return nil, err
	}
	services := newGroup(ctx, logger)
	defer services.stop() // before the databases close
	services.start("inventory relay", func(ctx context.Context) error { return runRelay(ctx, id, natsURL, "shop-inventory", logger) })
	services.start("search", func(ctx context.Context) error { return search.Consume(ctx, natsURL) })

	before, err := search.Count(ctx) // with --dir, earlier runs' listings
	if err != nil {
		return nil, err
	}
	var failures []string
	out.printf("  inventory's self-consumer is STOPPED: its listings table stays empty\n")
	titles := []string{"Red road bike, 54 cm", "Walnut writing desk", "Vintage film camera"}
	var tokens []listen.Token
	var ids []string
	for _, t := range titles {
		l, tok, err := inv.Create(ctx, Listing{Seller: "sam", Title: t, Description: "as new", PriceCents: 12000})
		if err != nil {
			return nil, err
		}
		tokens, ids = append(tokens, tok), append(ids, l.ID)
		got, ok, err := inv.Get(ctx, l.ID, listen.Token{})
		if err != nil {
			return nil, err
		}
		inTable, err := inv.InTable(ctx, l.ID)
		if err != nil {
			return nil, err
		}
		if !ok || got.Title != t {
			failures = append(failures, fmt.Sprintf("GET %s right after its POST did not show it", l.ID))
		}
		from := "the table"
		if !inTable {
			from = "the cache: the table does not have it"
		}
		out.printf("  seller   POST %q → %s; GET right after → found=%v (from %s)\n", t, l.ID, ok, from)
	}
	for _, q := range []string{"bike", "desk", "camera"} {
		var hits []Hit
		for deadline := time.Now().Add(10 * time.Second); len(hits) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if hits, err = search.Find(ctx, q, 5); err != nil {
				return nil, err
			}
		}
		if len(hits) == 0 {
			failures = append(failures, fmt.Sprintf("search %q found nothing", q))
			continue
		}
		out.printf("  search   %q → %q\n", q, hits[0].Title)
	}
	out.printf("  inventory's self-consumer STARTED\n")
	services.start("inventory self-consumer", func(ctx context.Context) error { return inv.ConsumeOwn(ctx, natsURL) })
	var all listen.Token
	for _, t := range tokens {
		all = all.Join(t)
	}
	if err := inv.listen.WaitApplied(ctx, all, 10*time.Second); err != nil {
		failures = append(failures, "the self-consumer did not apply the listings: "+err.Error())
	}
	applied := 0
	for _, lid := range ids {
		if ok, err := inv.InTable(ctx, lid); err != nil {
			return nil, err
		} else if ok {
			applied++
		}
	}
	if applied != len(ids) {
		failures = append(failures, fmt.Sprintf("the inventory table holds %d of the %d listings", applied, len(ids)))
	}
	out.printf("  inventory table now holds the %d listings (written by its own consumer from the events)\n", applied)

	if o.listings > 0 {
		out.printf("  creating %d listings at %d/s; each awaited until a search finds it...\n", o.listings, o.rate)
		v, err := measureVisibility(ctx, inv, search, watch, o.listings, o.rate, 10*time.Second)
		if err != nil {
			failures = append(failures, "visibility: "+err.Error())
		}
		if v.readMiss > 0 {
			failures = append(failures, fmt.Sprintf("%d GET(s) right after POST did not show the listing", v.readMiss))
		}
		out.printf("  search visibility (commit → searchable): p50 %s, p99 %s, max %s over %d listings; GET after POST missed %d\n",
			v.percentile(0.5).Round(100*time.Microsecond), v.percentile(0.99).Round(100*time.Microsecond),
			v.percentile(1).Round(100*time.Microsecond), len(v.latencies), v.readMiss)
	}
	n, err := search.Count(ctx)
	if err != nil {
		return nil, err
	}
	want := before + len(titles) + o.listings
	out.printf("  search index holds %d listings (created %d)\n", n-before, want-before)
	if n != want {
		failures = append(failures, fmt.Sprintf("search index holds %d listings, want %d", n, want))
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return failures, ctx.Err()
	}
	return failures, nil
}
