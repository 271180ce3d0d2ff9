package main

import (
	"context"
	"fmt"

	"github.com/outboxgo/outbox/admin"
	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
)

// inboxReport is an inbox as the admin API reports it.
type inboxReport struct{ *inbox.Inbox }

// InboxStats implements admin.Inbox.
func (r inboxReport) InboxStats(ctx context.Context) (admin.InboxStats, error) {
	st, err := r.Stats(ctx)
	return admin.InboxStats{Processed: st.Processed, ProcessedCapped: st.ProcessedCapped, LastProcessedAt: st.LastProcessedAt,
		DeadLetters: st.DeadLetters}, err
}

// adminInspect adds to ac what the API's relays, replay and inboxes need: this relay's id and
// source kind, the member TTL, the retention (the polling source's: the log sources delete
// what they publish) and the configured inboxes on the outbox's database.
func adminInspect(ctx context.Context, ac *admin.Config, cfg config.Config, st dialect.Store, src relay.Source, kind string) error {
	ac.SourceKind, ac.RelayTTL = kind, cfg.Poll.MemberTTL
	if p, ok := src.(*poll.Source); ok {
		ac.RelayID = p.RelayID()
	}
	if cfg.Source == config.SourcePoll {
		ac.Retention = cfg.Retention
	}
	for i, ai := range cfg.Admin.Inboxes {
		in, err := openInbox(ctx, st, ai.Table, ai.Consumer, fmt.Sprintf("admin.inboxes[%d].table", i))
		if err != nil {
			return err
		}
		ac.Inboxes = append(ac.Inboxes, inboxReport{in})
	}
	return nil
}
