package chaos

import (
	"context"
	"log/slog"

	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/redisinbox"
)

// runRedisInbox runs redisinbox with the settings of redisBroker.inboxSetup.
func runRedisInbox(ctx context.Context, spec ConsumerSpec, in *inbox.Inbox, h inbox.Handler, log *slog.Logger) error {
	s := spec.Broker
	a, err := redisinbox.New(redisinbox.Config{
		Inbox: in, Addr: s["addr"], Topics: []string{s["topic"]}, StreamPrefix: s["stream_prefix"],
		Group: s["group"], Consumer: s["consumer"], Logger: log,
	})
	if err != nil {
		return err
	}
	return a.Run(ctx, h)
}
