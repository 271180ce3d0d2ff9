package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

var serviceNames = []string{"order", "payment", "kitchen", "delivery"}

// runDemo runs the four services and an embedded NATS server, places orders, has the
// payment service killed between a commit and its publish, and checks the saga's end.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pizza", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		orders, rate, crash, port int
		dir, dbURL, prefix, nurl  string
		duration, ackWait         time.Duration
		verbose                   bool
	)
	fs.IntVar(&orders, "orders", 10, "orders to place")
	fs.IntVar(&rate, "rate", 5, "orders placed per second")
	fs.IntVar(&crash, "crash-after-commit", 3, "kill the payment service (a process of its own, SIGKILL) right after it commits its N-th charge, then restart it; 0: no crash, all four services in this process")
	fs.StringVar(&dir, "dir", "", "keep the SQLite files and the JetStream store here (default: a temporary directory, removed at exit)")
	fs.StringVar(&dbURL, "database-url", "", "PostgreSQL instead of SQLite files: each service gets its own schema (--schema-prefix + name)")
	fs.StringVar(&prefix, "schema-prefix", "pizza_", "prefix of the services' PostgreSQL schemas, with --database-url")
	fs.StringVar(&nurl, "nats-url", "", "an existing NATS JetStream server instead of the embedded one")
	fs.IntVar(&port, "port", 0, "port of the embedded NATS server on 127.0.0.1 (0: a free port)")
	fs.DurationVar(&duration, "duration", 90*time.Second, "give up if the orders have not all finished by then")
	fs.DurationVar(&ackWait, "ack-wait", 3*time.Second, "JetStream's redelivery delay of an unacknowledged event")
	fs.BoolVar(&verbose, "verbose", false, "show the services' logs")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage+"\nThe demo's flags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if orders < 1 || rate < 1 {
		return errors.New("--orders and --rate must be at least 1")
	}
	logger := newLogger(stderr, verbose)
	out := &printer{w: stdout}

	if dir == "" {
		d, err := os.MkdirTemp("", "pizza-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	broker := nurl
	if nurl == "" {
		ns, err := startNATS(filepath.Join(dir, "jetstream"), port)
		if err != nil {
			return err
		}
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		broker = ns.ClientURL()
	}
	dbs := map[string]dbOptions{}
	where := map[string]string{}
	for _, n := range serviceNames {
		dbs[n] = dbOptions{path: filepath.Join(dir, n+".db"), databaseURL: dbURL, schema: prefix + n}
		where[n] = "SQLite " + dbs[n].path
		if dbURL != "" {
			where[n] = "PostgreSQL schema " + dbs[n].schema
		}
	}
	out.line(fmt.Sprintf(`pizza: the order saga, four services talking only through events

  broker    NATS JetStream %s, stream %s on %s>
  order     %s   places %d order(s), follows each to its end
  payment   %s   ORDER_CREATED → charge → ORDER_PAID; ORDER_REJECTED → refund → ORDER_REFUNDED
  kitchen   %s   ORDER_PAID → ORDER_ACCEPTED, or ORDER_REJECTED when out of %s
  delivery  %s   ORDER_ACCEPTED → ORDER_DELIVERED
Each service commits its rows and its next event in ONE transaction (the outbox) and applies
each event once (the inbox). The order id is every event's key, the saga's correlation id.
`, broker, streamName, subjectPrefix, where["order"], orders, where["payment"], where["kitchen"], DefaultOutOfStock, where["delivery"]))
	if crash > 0 {
		out.line(fmt.Sprintf("The payment service runs as a process of its own: it kills itself (SIGKILL) right after\ncommitting charge #%d, before its relay publishes the ORDER_PAID. Watch that order still finish.\n", crash))
	}

	runCtx, stopAll := context.WithCancel(context.WithoutCancel(ctx))
	defer stopAll()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		errs     []error
		services []*service
	)
	for _, name := range serviceNames {
		if name == "payment" && crash > 0 {
			continue
		}
		o := serviceOptions{db: dbs[name], natsURL: broker, ackWait: ackWait, logger: logger.With("service", name), out: out}
		s, work := newService(name, o, 0, []string{DefaultOutOfStock}, orders, rate)
		if err := s.open(runCtx, ddlOf(name)); err != nil {
			stopAll()
			wg.Wait()
			return err
		}
		if name == "order" {
			var n int
			if err := s.db.db.QueryRowContext(runCtx, s.db.q(`SELECT count(*) FROM {t:orders}`)).Scan(&n); err != nil || n > 0 {
				s.db.close()
				stopAll()
				wg.Wait()
				if err == nil {
					err = fmt.Errorf("the order database (%s) holds %d order(s) of an earlier run: use a new --dir or --schema-prefix", where["order"], n)
				}
				return err
			}
		}
		services = append(services, s)
		wg.Go(func() {
			if err := s.run(runCtx, work); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
				mu.Unlock()
			}
		})
	}
	var child *paymentProcess
	if crash > 0 {
		exe, err := os.Executable()
		if err != nil {
			stopAll()
			wg.Wait()
			return err
		}
		p := dbs["payment"]
		args := []string{"payment", "--db", p.path, "--nats-url", broker, "--ack-wait", ackWait.String()}
		if dbURL != "" {
			args = append(args, "--database-url", dbURL, "--schema", p.schema)
		}
		if verbose {
			args = append(args, "--verbose")
		}
		child = &paymentProcess{exe: exe, args: args, crash: crash, out: out, stderr: stderr}
		wg.Go(func() { child.run(runCtx) })
	}

	// Follow the saga until every order has finished.
	deadline := time.Now().Add(duration)
	var r *report
	for {
		var err error
		r, err = readReport(runCtx, dbs)
		// With the crash, also wait for JetStream to redeliver the ORDER_CREATED the killed
		// process never acknowledged (after --ack-wait): the restarted inbox drops it.
		if err == nil && r.Orders == orders && r.Final() == orders && (child == nil || crash > orders || child.duplicates.Load() > 0) {
			break
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	stopAll()
	wait(&wg, 15*time.Second)
	r, err := readReport(context.Background(), dbs)
	if err != nil {
		return err
	}

	dups := int64(0)
	perService := []string{}
	for _, s := range services {
		dups += s.duplicates.Load()
		perService = append(perService, fmt.Sprintf("%s %d", s.name, s.duplicates.Load()))
	}
	if child != nil {
		dups += child.duplicates.Load()
		perService = append(perService, fmt.Sprintf("payment %d", child.duplicates.Load()))
	}
	out.line(fmt.Sprintf(`
Summary
  orders placed        %d
  delivered            %d
  cancelled, refunded  %d (rejected by the kitchen: %d)
  still in flight      %d
  charges / refunds    %d / %d (one charge per order, one refund per cancelled order)
  deliveries           %d
  duplicates dropped   %d by the inboxes (%s)`,
		r.Orders, r.Status["delivered"], r.Status["cancelled"], r.Rejected, r.Orders-r.Final(),
		r.Charges, r.Refunds, r.Deliveries, dups, strings.Join(perService, ", ")))
	if child != nil {
		out.line(fmt.Sprintf("  payment crashes      %d (SIGKILL between commit and publish), restarts %d", child.kills.Load(), child.restarts.Load()))
	}
	for _, v := range r.Violations {
		out.line("  VIOLATION            " + v)
	}
	mu.Lock()
	defer mu.Unlock()
	switch {
	case len(errs) > 0:
		return errors.Join(errs...)
	case len(r.Violations) > 0:
		return fmt.Errorf("%d broken invariant(s)", len(r.Violations))
	case r.Orders != orders || r.Final() != orders:
		return fmt.Errorf("%d of %d order(s) finished within %s", r.Final(), orders, duration)
	case child != nil && crash <= orders && child.kills.Load() == 0:
		return errors.New("the payment service did not crash as asked")
	}
	out.line("  OK: every order delivered or cancelled-and-refunded, nobody charged twice")
	return nil
}

// paymentProcess runs the payment service as a child process: first with
// --crash-after-commit, then, after it died, again without.
type paymentProcess struct {
	exe        string
	args       []string
	crash      int
	out        *printer
	stderr     io.Writer
	kills      atomic.Int64
	restarts   atomic.Int64
	duplicates atomic.Int64
}

func (p *paymentProcess) run(ctx context.Context) {
	for first := true; ctx.Err() == nil; first = false {
		args := p.args
		if first {
			args = append(append([]string{}, args...), "--crash-after-commit", strconv.Itoa(p.crash))
		} else {
			p.restarts.Add(1)
			p.out.line("payment  restarting the payment service (same database, same consumers)")
		}
		cmd := exec.Command(p.exe, args...) //nolint:gosec,noctx // our own binary; stopped with an interrupt below
		cmd.Stderr = p.stderr
		stdout, err := cmd.StdoutPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			p.out.line("payment  cannot start: " + err.Error())
			return
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if strings.Contains(sc.Text(), duplicateMark) {
					p.duplicates.Add(1)
				}
				p.out.line(sc.Text())
			}
		}()
		var waitErr error
		exited := make(chan struct{})
		go func() { <-done; waitErr = cmd.Wait(); close(exited) }()
		select {
		case <-exited:
			err := waitErr
			if ctx.Err() != nil {
				return
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) && !ee.Exited() { // killed by a signal
				p.kills.Add(1)
				p.out.line(fmt.Sprintf("payment  *** the payment process died (%v). Its committed charge's ORDER_PAID is still in its outbox,\n         the ORDER_CREATED it consumed was never acknowledged. Restarting it in 1s.", ee))
			} else {
				p.out.line(fmt.Sprintf("payment  the payment process exited (%v); restarting it in 1s", err))
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		case <-ctx.Done():
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			return
		}
	}
}

// wait waits for wg, at most d.
func wait(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// startNATS starts an embedded NATS JetStream server on 127.0.0.1, storing in dir.
func startNATS(dir string, port int) (*server.Server, error) {
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{ServerName: "pizza", Host: "127.0.0.1", Port: port,
		JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("starting NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("starting NATS: not ready within 10s (is port %d free?)", port)
	}
	return ns, nil
}
