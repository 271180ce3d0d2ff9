package chaos

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/kafkainbox"
)

// runKafkaInbox runs kafkainbox with the settings of kafkaBroker.inboxSetup.
func runKafkaInbox(ctx context.Context, spec ConsumerSpec, in *inbox.Inbox, h inbox.Handler, log *slog.Logger) error {
	s := spec.Broker
	c, err := kafkainbox.New(kafkainbox.Config{
		Inbox: in, Brokers: strings.Split(s["brokers"], ","), Group: s["group"],
		Topics: []string{s["topic"]}, TopicPrefix: s["topic_prefix"],
		ErrorDelay: 200 * time.Millisecond, Logger: log,
		ClientOptions: []kgo.Opt{
			kgo.SessionTimeout(kafkaInboxSession), kgo.HeartbeatInterval(kafkaInboxSession / 6),
			kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
		},
	})
	if err != nil {
		return err
	}
	return c.Run(ctx, h)
}
