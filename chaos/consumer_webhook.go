package chaos

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/webhookinbox"
)

// runWebhookInbox serves webhookinbox on the address of webhookBroker.inboxSetup until ctx
// ends, and runs its redrive.
func runWebhookInbox(ctx context.Context, spec ConsumerSpec, in *inbox.Inbox, h inbox.Handler, log *slog.Logger) error {
	s := spec.Broker
	wh, err := webhookinbox.New(webhookinbox.Config{
		Inbox: in, Handler: h, Secrets: []string{s["secret"]}, Topic: s["topic"],
		RetryPause: 200 * time.Millisecond, Logger: log,
	})
	if err != nil {
		return err
	}
	var ln net.Listener
	for { // the port may linger briefly after a kill
		if ln, err = net.Listen("tcp", s["listen"]); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
	srv := &http.Server{Handler: wh, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	rctx, stopRun := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = wh.Run(rctx) }() // Run returns nil when rctx ends
	select {
	case err = <-done:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	stopRun()
	<-runDone
	if err == nil || errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
