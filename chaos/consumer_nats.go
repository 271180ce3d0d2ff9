package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/natsinbox"
)

// runNATSInbox runs natsinbox with the settings of natsBroker.inboxSetup.
func runNATSInbox(ctx context.Context, spec ConsumerSpec, in *inbox.Inbox, h inbox.Handler, log *slog.Logger) error {
	s := spec.Broker
	ackWait, err := time.ParseDuration(s["ack_wait"])
	if err != nil {
		return fmt.Errorf("ack_wait: %w", err)
	}
	maxAckPending, err := strconv.Atoi(s["max_ack_pending"])
	if err != nil {
		return fmt.Errorf("max_ack_pending: %w", err)
	}
	a, err := natsinbox.New(natsinbox.Config{
		Inbox: in, URL: s["url"], Name: "chaos-consumer-" + strconv.Itoa(spec.Process),
		Stream: s["stream"], Durable: s["durable"], SubjectPrefix: s["subject_prefix"],
		AckWait: ackWait, MaxAckPending: maxAckPending, ReconnectWait: 100 * time.Millisecond,
		Logger: log,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx, h)
}
