package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

var (
	sagaOrders = flag.Int("orders", 200, "orders of TestSagaUnderKills (40 with -short)")
	sagaRate   = flag.Int("rate", 25, "orders placed per second in TestSagaUnderKills")
)

// buildPizza builds the example's binary once per test (the build cache makes it quick).
func buildPizza(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pizza")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// proc is one service run as its own process, restarted after each kill.
type proc struct {
	t    *testing.T
	name string
	bin  string
	args []string
	once []string // added to args on the first run only
	dir  string

	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	runs  int
	logs  []string
	kills int
}

func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.runs++
	log := filepath.Join(p.dir, fmt.Sprintf("%s-%d.log", p.name, p.runs))
	f, err := os.Create(log)
	if err != nil {
		p.t.Fatal(err)
	}
	args := append([]string{p.name}, p.args...)
	if p.runs == 1 {
		args = append(args, p.once...)
	}
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		p.t.Fatalf("starting %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = f.Close(); close(done) }()
	p.cmd, p.done, p.logs = cmd, done, append(p.logs, log)
}

// exited waits for the process to end by itself.
func (p *proc) exited(timeout time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.kills++
	p.mu.Unlock()
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.t.Errorf("%s did not die within 10s of SIGKILL", p.name)
	}
}

// stop interrupts the process (it prints its inbox's counts), and kills it after 10s.
func (p *proc) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// count counts the lines of the process's logs that contain s.
func (p *proc) count(s string) int {
	n := 0
	for _, l := range p.logs {
		f, err := os.Open(l)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.Contains(sc.Text(), s) {
				n++
			}
		}
		_ = f.Close()
	}
	return n
}

// broker is the test's NATS JetStream server, restartable on its port and store directory.
type broker struct {
	opts *server.Options
	mu   sync.Mutex
	ns   *server.Server
}

func (b *broker) start(t *testing.T) {
	t.Helper()
	ns, err := server.NewServer(b.opts)
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready within 10s")
	}
	b.mu.Lock()
	b.ns = ns
	b.mu.Unlock()
}

func (b *broker) stop() {
	b.mu.Lock()
	ns := b.ns
	b.ns = nil
	b.mu.Unlock()
	if ns != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestSagaUnderKills runs the four services as processes of their own, places -orders
// orders, SIGKILLs each service in turn at random moments (restarting it) and restarts the
// broker, then checks that every order ended delivered or cancelled-and-refunded, that
// nobody was charged twice, that no charge lacks an order and that no cancelled order was
// delivered.
func TestSagaUnderKills(t *testing.T) {
	orders := *sagaOrders
	if testing.Short() {
		orders = min(orders, 40)
	}
	sagaUnderKills(t, orders, nil)
}

// sagaUnderKills runs the scenario; db gives a service's database (nil: SQLite files).
func sagaUnderKills(t *testing.T, orders int, db func(name string) dbOptions) {
	bin := buildPizza(t)
	dir := t.TempDir()
	port := freePort(t)
	b := &broker{opts: &server.Options{ServerName: "pizza-test", Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: filepath.Join(dir, "jetstream"), NoLog: true, NoSigs: true}}
	b.start(t)
	t.Cleanup(b.stop)
	url := "nats://127.0.0.1:" + strconv.Itoa(port)

	dbs := map[string]dbOptions{}
	procs := map[string]*proc{}
	for _, name := range serviceNames {
		dbs[name] = dbOptions{path: filepath.Join(dir, name+".db")}
		if db != nil {
			dbs[name] = db(name)
		}
		args := []string{"--db", dbs[name].path, "--nats-url", url, "--ack-wait", "2s"}
		if u := dbs[name].databaseURL; u != "" {
			args = []string{"--database-url", u, "--schema", dbs[name].schema, "--nats-url", url, "--ack-wait", "2s"}
		}
		if name == "order" {
			args = append(args, "--orders", strconv.Itoa(orders), "--rate", strconv.Itoa(*sagaRate))
		}
		procs[name] = &proc{t: t, name: name, bin: bin, args: args, dir: dir}
	}
	// The article's crash first: the payment service kills itself (SIGKILL) right after
	// committing a charge, before publishing its ORDER_PAID and acknowledging the
	// ORDER_CREATED.
	crashAt := max(orders/4, 1)
	procs["payment"].once = []string{"--crash-after-commit", strconv.Itoa(crashAt)}
	// Cleanup: stop every process (kill after a timeout), whatever failed.
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Go(p.stop)
		}
		wg.Wait()
	})
	start := time.Now()
	for _, name := range serviceNames {
		procs[name].start()
	}
	if !procs["payment"].exited(60 * time.Second) {
		t.Fatalf("the payment service did not crash after its charge #%d", crashAt)
	}
	if procs["payment"].count("*** CRASH: charge committed") != 1 {
		t.Fatal("the payment service died without its crash after commit")
	}
	procs["payment"].start()

	// Faults: each service killed in turn at a random moment and restarted; the broker
	// restarted halfway through; two rounds while the orders flow.
	placing := time.Duration(orders) * time.Second / time.Duration(*sagaRate)
	gap := max(placing/10, 300*time.Millisecond)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 18))
	kills, brokerRestarts := 0, 0
	for round := range 2 {
		for i, name := range []string{"payment", "kitchen", "delivery", "order"} {
			time.Sleep(gap/2 + time.Duration(rng.Int64N(int64(gap))))
			procs[name].kill()
			kills++
			time.Sleep(time.Duration(rng.Int64N(int64(300 * time.Millisecond))))
			procs[name].start()
			if round == 0 && i == 1 {
				b.stop()
				time.Sleep(500 * time.Millisecond)
				b.start(t)
				brokerRestarts++
			}
		}
	}
	faultsDone := time.Since(start)

	// Wait for the saga to finish.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var r *report
	for {
		var err error
		r, err = readReport(ctx, dbs)
		// Done when every order finished, and the ORDER_CREATED the crash left unacknowledged
		// came back (after --ack-wait) to the payment's inbox.
		if err == nil && r.Orders == orders && r.Final() == orders && procs["payment"].count(duplicateMark+OrderCreated) > 0 {
			break
		}
		if ctx.Err() != nil {
			if err != nil {
				t.Fatalf("reading the saga: %v", err)
			}
			t.Fatalf("after %s: %d of %d orders placed, %d finished, by status %v; violations %v; the payment's inbox dropped %d ORDER_CREATED",
				time.Since(start).Round(time.Millisecond), r.Orders, orders, r.Final(), r.Status, r.Violations, procs["payment"].count(duplicateMark+OrderCreated))
		}
		time.Sleep(200 * time.Millisecond)
	}
	took := time.Since(start)
	for _, p := range procs {
		p.stop()
	}
	r, err := readReport(context.Background(), dbs)
	if err != nil {
		t.Fatal(err)
	}

	rejected := 0
	for n := 1; n <= orders; n++ {
		if pizza, _ := pizzaOf(n); pizza == DefaultOutOfStock {
			rejected++
		}
	}
	for _, v := range r.Violations {
		t.Error(v)
	}
	if r.Status["delivered"] != orders-rejected || r.Status["cancelled"] != rejected {
		t.Errorf("by status %v; want %d delivered and %d cancelled", r.Status, orders-rejected, rejected)
	}
	if r.Charges != orders || r.Refunds != rejected || r.Deliveries != orders-rejected || r.Rejected != rejected {
		t.Errorf("%d charges, %d refunds, %d deliveries, %d rejections; want %d, %d, %d, %d",
			r.Charges, r.Refunds, r.Deliveries, r.Rejected, orders, rejected, orders-rejected, rejected)
	}
	dups, perService := 0, []string{}
	for _, name := range serviceNames {
		n := procs[name].count(duplicateMark)
		dups += n
		perService = append(perService, fmt.Sprintf("%s %d", name, n))
	}
	t.Logf("%d orders: %d delivered, %d cancelled and refunded; %d charges, %d refunds, %d deliveries",
		orders, r.Status["delivered"], r.Status["cancelled"], r.Charges, r.Refunds, r.Deliveries)
	t.Logf("faults: the payment's SIGKILL after its commit of charge #%d, %d SIGKILLs (each service twice), %d broker restart(s), over %s; all orders finished after %s",
		crashAt, kills, brokerRestarts, faultsDone.Round(time.Millisecond), took.Round(time.Millisecond))
	t.Logf("duplicates dropped by the inboxes: %d (%s)", dups, strings.Join(perService, ", "))
	if procs["payment"].count(duplicateMark+OrderCreated) == 0 {
		t.Error("the payment's inbox dropped no ORDER_CREATED: the one its crash left unacknowledged came back to be dropped")
	}
}

// TestDemo runs the demo as a user would: it must exit 0, with the payment service killed
// between its commit and its publish, and the order finishing anyway.
func TestDemo(t *testing.T) {
	bin := buildPizza(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--orders", "6", "--rate", "10", "--crash-after-commit", "2", "--ack-wait", "1s", "--duration", "60s")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{
		"payment  order-0002  *** CRASH: charge committed",
		"the payment process died (signal: killed)",
		"order    order-0002  DELIVERED",
		"payment  order-0002  " + duplicateMark + "ORDER_CREATED dropped",
		"order    order-0005  CANCELLED and refunded",
		"payment crashes      1",
		"OK: every order delivered or cancelled-and-refunded",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in the demo's output:\n%s", want, out)
		}
	}
	if strings.Count(string(out), "payment  order-0002  charged") != 1 {
		t.Errorf("order-0002 charged other than once:\n%s", out)
	}
}
