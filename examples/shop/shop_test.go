package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/outboxgo/outbox/dialect/sqlite"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

// subcommandEnv makes the test binary run a shop subcommand instead of the tests: the
// scenario test's services are real processes that it can SIGKILL.
const subcommandEnv = "SHOP_TEST_SUBCOMMAND"

func TestMain(m *testing.M) {
	if os.Getenv(subcommandEnv) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// freePort returns a port free on 127.0.0.1 now.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// natsServer is an in-process JetStream server the test can restart on its port and store.
type natsServer struct {
	t    testing.TB
	dir  string
	port int
	mu   sync.Mutex
	ns   *server.Server
}

func newNATS(t testing.TB) *natsServer {
	s := &natsServer{t: t, dir: filepath.Join(t.TempDir(), "nats"), port: freePort(t)}
	s.start()
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.ns.Shutdown()
		s.ns.WaitForShutdown()
	})
	return s
}

func (s *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

func (s *natsServer) start() {
	ns, err := startNATS(s.dir, s.port)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.ns = ns
	s.mu.Unlock()
}

// restart stops the server, waits down, and starts it again on the same port and store.
func (s *natsServer) restart(down time.Duration) {
	s.mu.Lock()
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	s.mu.Unlock()
	time.Sleep(down)
	s.start()
}

// process is a shop subcommand running as a subprocess of the test.
type process struct {
	cmd    *exec.Cmd
	done   chan struct{}
	output *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startProcess starts the subcommand args and waits until it serves HTTP on addr.
func startProcess(t *testing.T, addr string, args ...string) *process {
	t.Helper()
	p, err := spawn(addr, args...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// spawn is startProcess for any goroutine.
func spawn(addr string, args ...string) (*process, error) {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), subcommandEnv+"=1")
	p := &process{cmd: cmd, done: make(chan struct{}), output: &lockedBuffer{}}
	cmd.Stdout, cmd.Stderr = p.output, p.output
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited at start: %s\n%s", args[0], cmd.ProcessState, p.output)
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			return nil, fmt.Errorf("%s not serving on %s after 30s:\n%s", args[0], addr, p.output)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop ends the process with SIGTERM (a clean shutdown).
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// killedBySIGKILL reports whether the process ended by SIGKILL.
func (p *process) killedBySIGKILL() bool {
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// postJSON posts v to url and decodes the response into out; it returns the status.
func postJSON(ctx context.Context, c *http.Client, url string, v, out any) (int, http.Header, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, fmt.Errorf("POST %s: %s: %s", url, resp.Status, b)
	}
	return resp.StatusCode, resp.Header, json.NewDecoder(resp.Body).Decode(out)
}

// getJSON gets url into out and returns the status.
func getJSON(ctx context.Context, c *http.Client, url string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
}

// Sizes of TestOrderPaidGatewayKill9.
const (
	paidOrders       = 150 // orders placed; about 70% paid, 15% declined, 15% never paid
	paidShortOrders  = 40
	paymentWorkers   = 4
	paidSettleWithin = 60 * time.Second
)

// TestOrderPaidGatewayKill9 runs the gateway and the OMS as processes on SQLite files and an
// in-process NATS server. The gateway SIGKILLs itself right after committing a payment
// (--crash-after-commit) and is later killed with SIGKILL by the test mid-run; each time it
// is restarted, and the clients retry their payments. In the end every paid order is in
// packing, entered once; no declined or unpaid order is.
func TestOrderPaidGatewayKill9(t *testing.T) {
	n := paidOrders
	if testing.Short() {
		n = paidShortOrders
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	ns := newNATS(t)
	gwAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	omsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	gwDB, omsDB := filepath.Join(dir, "gateway.db"), filepath.Join(dir, "oms.db")

	oms := startProcess(t, omsAddr, "oms", "--addr", omsAddr, "--db", omsDB, "--nats-url", ns.url())
	defer oms.stop()

	// The gateway's supervisor restarts it whenever it dies, until the test stops it.
	var (
		gwMu     sync.Mutex
		gw       *process
		kills    atomic.Int64
		stopping atomic.Bool
		supDone  = make(chan struct{})
	)
	gwArgs := []string{"gateway", "--addr", gwAddr, "--db", gwDB, "--nats-url", ns.url()}
	// --crash-after-commit: the gateway SIGKILLs itself right after its commit of the
	// (n/8)th payment, well before the test's own kill at two thirds of the orders.
	gw = startProcess(t, gwAddr, append(gwArgs, "--crash-after-commit", strconv.Itoa(max(3, n/8)))...)
	go func() {
		defer close(supDone)
		for {
			gwMu.Lock()
			p := gw
			gwMu.Unlock()
			<-p.done
			if stopping.Load() {
				return
			}
			if !p.killedBySIGKILL() {
				t.Errorf("the gateway exited by itself: %s\n%s", p.cmd.ProcessState, p.output)
				return
			}
			if kills.Add(1) == 1 && !strings.Contains(p.output.String(), "crashing (SIGKILL) right after the commit") {
				t.Errorf("the gateway's first death was not --crash-after-commit:\n%s", p.output)
			}
			t.Logf("gateway SIGKILLed (%d), restarting; its output:\n%s", kills.Load(), p.output)
			time.Sleep(200 * time.Millisecond)
			np, err := spawn(gwAddr, gwArgs...)
			if err != nil {
				t.Errorf("restarting the gateway: %v", err)
				return
			}
			gwMu.Lock()
			gw = np
			gwMu.Unlock()
		}
	}()

	client := &http.Client{Timeout: 10 * time.Second}
	type planned struct {
		order Order
		card  string // "" never paid
	}
	plans := make([]planned, n)
	for i := range plans {
		var ord Order
		if _, _, err := postJSON(ctx, client, "http://"+omsAddr+"/orders", map[string]any{"customer": fmt.Sprintf("c%d", i), "total_cents": 100 + rand.Int64N(10000)}, &ord); err != nil {
			t.Fatal(err)
		}
		plans[i].order = ord
		switch r := rand.IntN(100); {
		case r < 15:
		case r < 30:
			plans[i].card = declinedCard
		default:
			plans[i].card = "4242424242424242"
		}
	}

	// Pay from a few clients at once, retrying each payment until the gateway answers: it
	// is idempotent per order, so a retry after a crash returns the payment committed.
	work := make(chan planned)
	var wg sync.WaitGroup
	var paid atomic.Int64
	for range paymentWorkers {
		wg.Go(func() {
			for p := range work {
				for {
					var pay Payment
					_, _, err := postJSON(ctx, client, "http://"+gwAddr+"/payments",
						map[string]any{"order_id": p.order.ID, "amount_cents": p.order.TotalCents, "card": p.card}, &pay)
					if err == nil {
						paid.Add(1)
						break
					}
					if ctx.Err() != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	killAt := len(plans) * 2 / 3
	for i, p := range plans {
		if i == killAt {
			// The second fault: kill -9 from outside, whatever the gateway is doing.
			time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
			gwMu.Lock()
			_ = gw.cmd.Process.Kill() // SIGKILL
			gwMu.Unlock()
		}
		if p.card == "" {
			continue
		}
		select {
		case work <- p:
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(work)
	wg.Wait()
	if kills.Load() < 2 {
		// The external kill may land while the gateway is still restarting from the first.
		t.Logf("gateway SIGKILLed %d times", kills.Load())
	}
	if kills.Load() < 1 {
		t.Fatal("the gateway never crashed after its commit")
	}

	// Wait until the OMS settled every order the gateway took a payment for.
	gdb, err := sql.Open("sqlite", sqlite.DSN(gwDB))
	if err != nil {
		t.Fatal(err)
	}
	defer gdb.Close()
	odb, err := sql.Open("sqlite", sqlite.DSN(omsDB))
	if err != nil {
		t.Fatal(err)
	}
	defer odb.Close()
	payments := map[string]string{} // order → status at the gateway
	if err := readPayments(ctx, gdb, payments); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(paidSettleWithin)
	for {
		var settled int
		if err := odb.QueryRowContext(ctx, `SELECT count(*) FROM orders WHERE status <> $1`, statusAwaitingPayment).Scan(&settled); err != nil {
			t.Fatal(err)
		}
		if settled >= len(payments) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Let late duplicates (redeliveries after the kills) arrive before checking.
	time.Sleep(time.Second)

	var captured, declined, unpaid int
	for _, p := range plans {
		var status string
		var packings int
		if err := odb.QueryRowContext(ctx, `SELECT status FROM orders WHERE id = $1`, p.order.ID).Scan(&status); err != nil {
			t.Fatal(err)
		}
		if err := odb.QueryRowContext(ctx, `SELECT count(*) FROM order_history WHERE order_id = $1 AND status = $2`, p.order.ID, statusPacking).Scan(&packings); err != nil {
			t.Fatal(err)
		}
		gwStatus, hasPayment := payments[p.order.ID]
		switch {
		case p.card == "":
			unpaid++
			if hasPayment || status != statusAwaitingPayment || packings != 0 {
				t.Errorf("unpaid %s: payment %v, status %s, entered packing %d times", p.order.ID, hasPayment, status, packings)
			}
		case p.card == declinedCard:
			declined++
			if gwStatus != paymentDeclined || status != statusPaymentFailed || packings != 0 {
				t.Errorf("declined %s: gateway %q, status %s, entered packing %d times", p.order.ID, gwStatus, status, packings)
			}
		default:
			captured++
			if gwStatus != paymentCaptured || status != statusPacking || packings != 1 {
				t.Errorf("paid %s: gateway %q, status %s, entered packing %d times (want once)", p.order.ID, gwStatus, status, packings)
			}
		}
	}
	if len(payments) != captured+declined {
		t.Errorf("the gateway holds %d payments, want %d", len(payments), captured+declined)
	}
	t.Logf("%d orders: %d paid → packing once each, %d declined, %d never paid; gateway SIGKILLed %d times, %d payment requests answered",
		len(plans), captured, declined, unpaid, kills.Load(), paid.Load())

	stopping.Store(true)
	gwMu.Lock()
	p := gw
	gwMu.Unlock()
	p.stop()
	<-supDone
}

// readPayments reads the gateway's payments into m: order → status.
func readPayments(ctx context.Context, db *sql.DB, m map[string]string) error {
	rows, err := db.QueryContext(ctx, `SELECT order_id, status FROM payments`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			return err
		}
		m[id] = st
	}
	return rows.Err()
}

// Sizes of TestListingCreated.
const (
	listingsStopped      = 50  // created while the inventory's self-consumer is stopped
	listingsRunning      = 400 // created after, across a broker restart
	listingsShortRunning = 100
	listingsPerSecond    = 100
)

// TestListingCreated runs the inventory and the search service in this process on SQLite
// files and an in-process NATS server, over their HTTP APIs. With the inventory's
// self-consumer stopped, a GET right after each POST shows the listing (from the cache)
// while the table is empty; then, with it running, listings are created across a broker
// restart. In the end every listing is searchable, indexed once, and in the inventory table;
// no GET after a POST missed its listing.
func TestListingCreated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	logger := testLogger()
	id, err := openDatabase(ctx, "inventory", filepath.Join(dir, "inventory.db"), "", true, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer id.close()
	sd, err := openDatabase(ctx, "search", filepath.Join(dir, "search.db"), "", false, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer sd.close()
	listingScenario(ctx, t, id, sd, logger)
}

// TestListingCreatedPostgres is TestListingCreated with each service in a schema of its own
// on the real PostgreSQL server (PostgreSQL full-text search instead of FTS5).
func TestListingCreatedPostgres(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, invSchema := pgtest.Schema(t)
	_, searchSchema := pgtest.Schema(t)
	logger := testLogger()
	id, err := openDatabaseIn(ctx, invSchema, "", pgtest.URL(), true, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer id.close()
	sd, err := openDatabaseIn(ctx, searchSchema, "", pgtest.URL(), false, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer sd.close()
	listingScenario(ctx, t, id, sd, logger)
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

// listingScenario is the scenario of TestListingCreated on the given databases, with an
// in-process NATS server (restarted half-way).
func listingScenario(ctx context.Context, t *testing.T, id, sd *database, logger *slog.Logger) {
	running := listingsRunning
	if testing.Short() {
		running = listingsShortRunning
	}
	ns := newNATS(t)
	inv, err := NewInventory(ctx, id, logger)
	if err != nil {
		t.Fatal(err)
	}
	search, err := NewSearch(ctx, sd, logger)
	if err != nil {
		t.Fatal(err)
	}
	invSrv := httptest.NewServer(inv.Handler())
	defer invSrv.Close()
	searchSrv := httptest.NewServer(search.Handler())
	defer searchSrv.Close()

	services := newGroup(ctx, logger)
	defer services.stop()
	services.start("inventory relay", func(ctx context.Context) error { return runRelay(ctx, id, ns.url(), "shop-inventory", logger) })
	services.start("search", func(ctx context.Context) error { return search.Consume(ctx, ns.url()) })

	client := &http.Client{Timeout: 10 * time.Second}
	type created struct {
		id, word string
	}
	var all []created
	var readMisses int
	create := func(i int) {
		word := fmt.Sprintf("sku%06dx%06x", i, rand.IntN(1<<24))
		var l Listing
		_, _, err := postJSON(ctx, client, invSrv.URL+"/listings",
			map[string]any{"seller": "sam", "title": "Item " + word, "description": "a thing " + word, "price_cents": 500}, &l)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, created{l.ID, word})
		var got Listing
		status, err := getJSON(ctx, client, invSrv.URL+"/listings/"+l.ID, &got)
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusOK || got.ID != l.ID || got.Title != "Item "+word {
			readMisses++
			t.Errorf("GET %s right after its POST: %d %+v", l.ID, status, got)
		}
	}

	// Phase 1: the self-consumer is stopped; reads come from the cache alone.
	for i := range listingsStopped {
		create(i)
	}
	if n, err := inv.TableCount(ctx); err != nil || n != 0 {
		t.Fatalf("inventory table holds %d rows (%v) with its self-consumer stopped, want 0", n, err)
	}

	// Phase 2: the self-consumer runs; the broker restarts in the middle.
	services.start("inventory self-consumer", func(ctx context.Context) error { return inv.ConsumeOwn(ctx, ns.url()) })
	restarted := make(chan struct{})
	tick := time.NewTicker(time.Second / listingsPerSecond)
	defer tick.Stop()
	for i := range running {
		if i == running/2 {
			go func() {
				defer close(restarted)
				ns.restart(500 * time.Millisecond)
			}()
		}
		<-tick.C
		create(listingsStopped + i)
	}
	<-restarted

	// Every listing becomes searchable (through the search HTTP API), and is applied.
	deadline := time.Now().Add(60 * time.Second)
	for _, c := range all {
		for {
			var hits []Hit
			if _, err := getJSON(ctx, client, searchSrv.URL+"/search?q="+c.word, &hits); err != nil {
				t.Fatal(err)
			}
			if len(hits) == 1 && hits[0].ID == c.id {
				break
			}
			if len(hits) > 1 {
				t.Fatalf("search %s: %d hits, want 1: %+v", c.word, len(hits), hits)
			}
			if time.Now().After(deadline) {
				t.Fatalf("listing %s never became searchable", c.id)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for {
		n, err := inv.TableCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n == len(all) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inventory table holds %d listings, want %d", n, len(all))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // late redeliveries, if any, would show as extra rows
	if n, err := search.Count(ctx); err != nil || n != len(all) {
		t.Errorf("search index holds %d rows (%v), want %d (each listing once)", n, err, len(all))
	}
	t.Logf("%d listings (%d with the self-consumer stopped), broker restarted once: all searchable, indexed once, applied; GET after POST missed %d",
		len(all), listingsStopped, readMisses)
}

// TestDemo runs the one-process demo, reduced.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code := run(ctx, []string{"--dir", t.TempDir(), "--listings", "50"}, &out, &out)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
	for _, want := range []string{"CRASHED right after that commit", "1 event(s) left in its outbox", "All checks passed."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "FAILED") {
			t.Error(sc.Text())
		}
	}
}
