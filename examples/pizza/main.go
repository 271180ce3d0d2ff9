// Command pizza is the pizza-order saga of the outbox articles, runnable: four services
// (order, payment, kitchen, delivery), each with its own database, talking only through
// events over NATS JetStream. Each service writes with the transactional outbox (its rows
// and its next events in one transaction, published by a relay) and consumes with the
// inbox (each event applied once, whatever the broker redelivers).
//
//	go run ./examples/pizza                    # the demo: everything in one command
//	pizza payment --db payment.db --nats-url nats://127.0.0.1:4222   # one service, its own process
//
// See README.md.
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
	"strings"
	"syscall"
	"time"
)

const usage = `usage:
  pizza [demo flags]                 run the demo: the four services, an embedded NATS, orders, a crash
  pizza order    [service flags] [--orders N --rate R]
  pizza payment  [service flags] [--crash-after-commit N]
  pizza kitchen  [service flags] [--out-of-stock PIZZA,...]
  pizza delivery [service flags]

Run "pizza <command> -h" for the flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pizza:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "order", "payment", "kitchen", "delivery":
			return runService(ctx, args[0], args[1:], stdout, stderr)
		case "demo":
			args = args[1:]
		case "help":
			fmt.Fprint(stdout, usage)
			return nil
		default:
			fmt.Fprint(stderr, usage)
			return fmt.Errorf("unknown command %q", args[0])
		}
	}
	return runDemo(ctx, args, stdout, stderr)
}

func newLogger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// runService runs one service as its own process until it is interrupted.
func runService(ctx context.Context, name string, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pizza "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		o        serviceOptions
		verbose  bool
		orders   int
		rate     int
		crash    int
		outStock string
	)
	fs.StringVar(&o.db.path, "db", name+".db", "the service's SQLite database file")
	fs.StringVar(&o.db.databaseURL, "database-url", "", "PostgreSQL instead of SQLite: postgres://... (the service uses its own schema)")
	fs.StringVar(&o.db.schema, "schema", "pizza_"+name, "the service's PostgreSQL schema, with --database-url")
	fs.StringVar(&o.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS JetStream server")
	fs.StringVar(&o.natsURL, "nats", "nats://127.0.0.1:4222", "same as --nats-url")
	fs.DurationVar(&o.ackWait, "ack-wait", 5*time.Second, "JetStream's redelivery delay of an unacknowledged event (after a crash)")
	fs.BoolVar(&verbose, "verbose", false, "log the relay's and the inbox's information messages")
	switch name {
	case "order":
		fs.IntVar(&orders, "orders", 0, "place orders order-0001 to order-N (those already placed are skipped)")
		fs.IntVar(&rate, "rate", 10, "orders placed per second")
	case "payment":
		fs.IntVar(&crash, "crash-after-commit", 0, "kill this process (SIGKILL) right after committing its N-th charge, before the relay publishes its ORDER_PAID")
	case "kitchen":
		fs.StringVar(&outStock, "out-of-stock", DefaultOutOfStock, "pizzas the kitchen rejects (comma-separated)")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o.logger = newLogger(stderr, verbose)
	o.out = &printer{w: stdout}
	s, work := newService(name, o, crash, strings.Split(outStock, ","), orders, rate)
	if err := s.open(ctx, ddlOf(name)); err != nil {
		return err
	}
	err := s.run(ctx, work)
	o.out.line(fmt.Sprintf("%-8s stopped: inbox applied %d event(s), dropped %d duplicate(s)", name, s.applied.Load(), s.duplicates.Load()))
	return err
}

// newService builds the named service; work is the order service's order placing.
func newService(name string, o serviceOptions, crash int, outOfStock []string, orders, rate int) (*service, func(context.Context) error) {
	switch name {
	case "order":
		s := newOrderService(o)
		if orders > 0 {
			return s, placeOrders(s, orders, rate)
		}
		return s, nil
	case "payment":
		return newPaymentService(o, crash), nil
	case "kitchen":
		return newKitchenService(o, outOfStock), nil
	default:
		return newDeliveryService(o), nil
	}
}

func ddlOf(name string) []string {
	switch name {
	case "order":
		return orderDDL
	case "payment":
		return paymentDDL
	case "kitchen":
		return kitchenDDL
	default:
		return deliveryDDL
	}
}
