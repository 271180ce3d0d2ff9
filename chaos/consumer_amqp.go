package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/amqpinbox"
)

// runAMQPInbox runs amqpinbox with the settings of amqpBroker.inboxSetup.
func runAMQPInbox(ctx context.Context, spec ConsumerSpec, in *inbox.Inbox, h inbox.Handler, log *slog.Logger) error {
	s := spec.Broker
	prefetch, err := strconv.Atoi(s["prefetch"])
	if err != nil {
		return fmt.Errorf("prefetch: %w", err)
	}
	c, err := amqpinbox.New(amqpinbox.Config{
		Inbox: in, URL: s["url"], Queue: s["queue"], Prefetch: prefetch,
		ConsumerTag: "chaos-consumer-" + strconv.Itoa(spec.Process),
		ErrorDelay:  200 * time.Millisecond, ReconnectWait: 100 * time.Millisecond, Logger: log,
	})
	if err != nil {
		return err
	}
	return c.Run(ctx, h)
}
