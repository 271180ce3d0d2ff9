package nats

import (
	"errors"
	"fmt"
	"strings"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox/sink"
)

// classify turns a publish error into a sink result: permanent for what no retry can fix,
// retryable (plain) for everything an operator or time can fix.
func classify(err error, subject string) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, natsgo.ErrMaxPayload):
		return sink.Permanent(fmt.Errorf("nats sink: publishing to %q: message (payload and headers) larger than the server's max_payload: %w", subject, err))
	case errors.Is(err, natsgo.ErrBadSubject):
		return sink.Permanent(fmt.Errorf("nats sink: publishing to %q: invalid subject: %w", subject, err))
	case errors.Is(err, natsgo.ErrBadHeaderMsg):
		return sink.Permanent(fmt.Errorf("nats sink: publishing to %q: invalid header name: %w", subject, err))
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, natsgo.ErrNoResponders):
		// Retryable: an operator may create the stream, and the message must not be lost.
		return fmt.Errorf("nats sink: publishing to %q: no JetStream stream captures this subject "+
			"(create a stream for it, or set the sink's Stream config); will retry: %w", subject, err)
	case errors.As(err, &apiErr):
		// The server answers 4xx for what is wrong with the message itself (too large for the
		// stream, failed expectation headers, sealed stream) and 5xx for its own trouble
		// (storage, leadership, limits that consumers can free).
		if apiErr.Code >= 400 && apiErr.Code < 500 || strings.Contains(apiErr.Description, "message too large") {
			return sink.Permanent(fmt.Errorf("nats sink: publishing to %q: rejected by JetStream: %w", subject, err))
		}
		return fmt.Errorf("nats sink: publishing to %q: JetStream error: %w", subject, err)
	default:
		// Timeouts, disconnects, closed connections.
		return fmt.Errorf("nats sink: publishing to %q: %w", subject, err)
	}
}

// notConnected is the retryable error for messages not sent because the connection is down.
func notConnected(st natsgo.Status) error {
	if st == natsgo.CLOSED {
		return fmt.Errorf("nats sink: not sent: %w", natsgo.ErrConnectionClosed)
	}
	return fmt.Errorf("nats sink: not sent: not connected to NATS (connection %s): %w", st, natsgo.ErrDisconnected)
}
