package chaos

import (
	"context"
	"log/slog"
	"time"

	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/mqttinbox"
)

// runMQTTInbox runs mqttinbox with the settings of mqttBroker.inboxSetup.
func runMQTTInbox(ctx context.Context, spec ConsumerSpec, in *inbox.Inbox, h inbox.Handler, log *slog.Logger) error {
	s := spec.Broker
	c, err := mqttinbox.New(mqttinbox.Config{
		Inbox: in, Broker: s["broker"], ClientID: s["client_id"], TopicPrefix: s["topic_prefix"],
		ReceiveMaximum: 65535, ConnectTimeout: 5 * time.Second, RetryPause: 200 * time.Millisecond,
		Logger: log,
	})
	if err != nil {
		return err
	}
	return c.Run(ctx, h)
}
