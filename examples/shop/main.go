// Command shop runs the two flows of the dual-write article on the transactional outbox:
//
//   - "order paid": a payment gateway commits a payment and its payment.captured (or
//     payment.declined) event in one transaction; the order management service (OMS)
//     consumes the event through its inbox and moves the order to packing, once, and only
//     when it was paid, even when the gateway crashes right after its commit;
//   - "listing created": the inventory service writes only a listing.created event
//     (listen to yourself) and serves the seller's GET from a write-through cache until its
//     own consumer has written its table; the search service indexes every new listing
//     (SQLite FTS5, or PostgreSQL full-text search) through its inbox.
//
// Without a subcommand it runs everything in one process on SQLite files and an in-process
// NATS JetStream server, drives both flows, prints what happens and exits (status 1 if an
// invariant failed). Each service is also a subcommand, to run as its own process:
//
//	shop [demo] [--dir DIR] [--database-url URL] [--nats-url URL] [--listings N]
//	shop nats      --addr 127.0.0.1:4222 --dir DIR
//	shop gateway   --addr 127.0.0.1:8081 --db gateway.db --nats-url URL [--crash-after-commit N]
//	shop oms       --addr 127.0.0.1:8082 --db oms.db --nats-url URL
//	shop inventory --addr 127.0.0.1:8083 --db inventory.db --nats-url URL
//	shop search    --addr 127.0.0.1:8084 --db search.db --nats-url URL
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches to a subcommand and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	name := "demo"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	commands := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"demo":      runDemo,
		"nats":      runNATS,
		"gateway":   runGateway,
		"oms":       runOMS,
		"inventory": runInventory,
		"search":    runSearch,
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "shop: unknown command %q (demo, nats, gateway, oms, inventory, search)\n", name)
		return 2
	}
	err := cmd(ctx, args, stdout, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "shop %s: %v\n", name, err)
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "shop %s: %v\n", name, err)
		return 1
	}
	return 0
}

// usageError is a bad command line.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// serviceFlags are the flags every service subcommand takes.
type serviceFlags struct {
	addr        string
	db          string
	databaseURL string
	natsURL     string
	verbose     bool
}

func (f *serviceFlags) register(fs *flag.FlagSet, defaultAddr, defaultDB string) {
	fs.StringVar(&f.addr, "addr", defaultAddr, "HTTP listen address")
	fs.StringVar(&f.db, "db", defaultDB, "SQLite database file (embedded mode)")
	fs.StringVar(&f.databaseURL, "database-url", "", "PostgreSQL URL: the service uses its own schema there instead of --db")
	fs.StringVar(&f.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server with JetStream")
	fs.BoolVar(&f.verbose, "verbose", false, "log at INFO instead of WARN")
}

// open parses a service subcommand's args into fs (f registered on it), and opens the
// service's database (with an outbox when withOutbox) and its logger on stderr.
func (f *serviceFlags) open(ctx context.Context, fs *flag.FlagSet, args []string, service string, withOutbox bool, stderr io.Writer) (*database, *slog.Logger, error) {
	if err := parse(fs, args); err != nil {
		return nil, nil, err
	}
	logger := newLogger(stderr, f.verbose)
	d, err := openDatabase(ctx, service, f.db, f.databaseURL, withOutbox, logger)
	if err != nil {
		return nil, nil, err
	}
	return d, logger, nil
}

// parse parses args into fs, refusing positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}
