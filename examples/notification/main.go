// Command notification is the notification service of the transactional outbox's case study,
// runnable with nothing installed:
//
//	go run ./examples/notification               # a demo on SQLite and an embedded NATS, then a summary
//	go run ./examples/notification --watch       # the same, with a per-channel view every second
//	notification publisher --channel sms --dir DIR --provider-url http://127.0.0.1:8025
//
// Customers subscribe at order time (POST /subscribe) through the subscription service. The
// order service commits each status change with an order.status event in its outbox; its
// relay publishes the events to NATS JetStream; the notification service consumes them
// through the inbox and, in the inbox's transaction, stores the notification and one
// notify_outbox message per channel the customer chose (topics notify.sms, notify.email,
// notify.voice). A channel publisher per channel, a relay restricted to its topic, delivers
// them: email over SMTP, SMS and voice through the providers' HTTP APIs, each message with
// its outbox id as Message-ID or Idempotency-Key so that a resend is deduped.
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
	"time"

	"github.com/outboxgo/outbox/sink"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
	case err != nil:
		fmt.Fprintln(os.Stderr, "notification:", err)
		os.Exit(1)
	}
}

// run dispatches the subcommands: none runs the demo.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "publisher" {
		return runPublisherCmd(ctx, args[1:], stderr)
	}
	return runDemo(ctx, args, stdout, stderr)
}

// runPublisherCmd runs one channel publisher until ctx ends (SIGINT, SIGTERM).
func runPublisherCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("publisher", flag.ContinueOnError)
	fs.SetOutput(stderr)
	channel := fs.String("channel", "", "the channel: sms, voice or email (relays topic notify.<channel> only)")
	dir := fs.String("dir", "", "the directory of the notification service's SQLite database (notify.db)")
	dbURL := fs.String("database-url", "", "or its PostgreSQL database: postgres://...")
	schema := fs.String("schema", DefaultSchema, "with --database-url: the schema of the example's tables")
	relayID := fs.String("relay-id", "", "the publisher's id among its channel's publishers (default publisher-<channel>; give a second one another)")
	providerURL := fs.String("provider-url", "", "sms, voice: the provider API's base URL")
	smtpAddr := fs.String("smtp", "", "email: the SMTP server's host:port")
	var level slog.Level
	fs.TextVar(&level, "log-level", slog.LevelWarn, "the least level logged: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var snk sink.Sink
	switch {
	case (*dir == "") == (*dbURL == ""):
		return errors.New("publisher: one of --dir and --database-url is required")
	case *channel == "email" && *smtpAddr != "":
		snk = NewEmailSink(*smtpAddr)
	case (*channel == "sms" || *channel == "voice") && *providerURL != "":
		snk = NewProviderSink(*providerURL)
	default:
		return errors.New("publisher: --channel email needs --smtp; --channel sms or voice needs --provider-url")
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})).With(slog.String("publisher", *channel))
	logger.Info("publishing", slog.String("topic", Topic(*channel)))
	err := RunPublisher(ctx, PublisherConfig{Storage: Storage{Dir: *dir, URL: *dbURL, Schema: *schema}, Channel: *channel, RelayID: *relayID, Sink: snk, Logger: logger})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// waitFor polls cond every 20ms until it holds or timeout passes; it reports whether it held.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
