// Command outbox-chaos-consumer is one consumer process of the fault-injection checker
// (chaos.Config.Consumers): it runs the sink's inbox adapter and applies each message's
// effect through the inbox, in the run's database, until SIGTERM. The checker starts it, kills
// it with SIGKILL now and then, and starts it again; its configuration is a chaos.ConsumerSpec,
// as JSON, in $CHAOS_CONSUMER_SPEC:
//
//	CHAOS_CONSUMER_SPEC='{"sink":"nats",...}' outbox-chaos-consumer consume
//
// It logs to standard error, and exits 0 once stopped by a signal, 1 when the adapter or the
// database setup fails, 2 on a missing or invalid spec.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/outboxgo/outbox/chaos"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if len(args) != 1 || args[0] != "consume" {
		fmt.Fprintln(os.Stderr, "usage: outbox-chaos-consumer consume (configuration in $"+chaos.ConsumerSpecEnv+")")
		return 2
	}
	var spec chaos.ConsumerSpec
	raw := os.Getenv(chaos.ConsumerSpecEnv)
	if raw == "" {
		fmt.Fprintln(os.Stderr, "outbox-chaos-consumer: $"+chaos.ConsumerSpecEnv+" is not set")
		return 2
	}
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		fmt.Fprintf(os.Stderr, "outbox-chaos-consumer: $%s: %v\n", chaos.ConsumerSpecEnv, err)
		return 2
	}
	if err := chaos.RunConsumer(ctx, spec, log); err != nil {
		log.Error("consumer failed", slog.Any("error", err))
		return 1
	}
	log.Info("consumer stopped")
	return 0
}
