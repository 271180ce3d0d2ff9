package nats

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/internal/unavail"
)

// ErrAuth is wrapped by the error New returns when the server refuses the sink's credentials
// (the user, password, token or credentials in Config.URL): a configuration the sink cannot
// work with, reported at start instead of retried. At runtime (credentials changed on the
// server after New) the sink keeps reconnecting instead, and Publish fails with
// sink.Unavailable errors wrapping nats.ErrAuthorization until the server accepts it again.
var ErrAuth = errors.New("nats sink: authentication refused")

// isAuthErr reports whether err is the server refusing the connection's credentials.
func isAuthErr(err error) bool {
	return errors.Is(err, natsgo.ErrAuthorization) || errors.Is(err, natsgo.ErrAuthExpired) ||
		errors.Is(err, natsgo.ErrAuthRevoked) || errors.Is(err, natsgo.ErrAccountAuthExpired)
}

// sinkWide reports whether a publish failure is the sink's as a whole rather than the
// message's: the connection is down, closed, draining or reconnecting; the credentials were
// refused; nothing answered (no stream captures the subject, no JetStream); no
// acknowledgement came within the publish timeout; the sink is closed; or JetStream answered
// with a server-side (5xx) error about itself (storage, leadership, a full stream).
func sinkWide(err error) bool {
	for _, target := range []error{
		natsgo.ErrDisconnected, natsgo.ErrConnectionClosed, natsgo.ErrConnectionDraining,
		natsgo.ErrConnectionReconnecting, natsgo.ErrReconnectBufExceeded, natsgo.ErrStaleConnection,
		natsgo.ErrNoServers, natsgo.ErrInvalidConnection, natsgo.ErrMaxConnectionsExceeded,
		natsgo.ErrTimeout, natsgo.ErrNoResponders, jetstream.ErrNoStreamResponse,
		jetstream.ErrJetStreamNotEnabled, jetstream.ErrJetStreamNotEnabledForAccount,
		context.DeadlineExceeded, context.Canceled, ErrClosed,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	if isAuthErr(err) {
		return true
	}
	// A transport failure writing or reading the connection (broken pipe, reset, EOF): the
	// connection is going down, whatever the message.
	var opErr *net.OpError
	if errors.As(err, &opErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code >= 500
}

// markUnavailable wraps every sink-wide result of res with sink.Unavailable; permanent,
// duplicate and message-specific retryable results stay as they are.
func markUnavailable(res []error) { unavail.Mark(res, sinkWide) }

// duplicate is the result of a PubAck flagged as duplicate.
func duplicate(stream string, seq uint64) error {
	return sink.Duplicate("JetStream stream " + strconv.Quote(stream) + " already holds this message id at sequence " +
		strconv.FormatUint(seq, 10) + "; this publish was not stored")
}

// classify turns a publish error into a sink result: permanent for what no retry can fix,
// retryable (plain) for everything an operator or time can fix. Publish then marks the
// sink-wide ones (see sinkWide) with sink.Unavailable. A duplicate result passes as it is.
func classify(err error, subject string) error {
	var apiErr *jetstream.APIError
	switch {
	case sink.IsDuplicate(err):
		return err
	case errors.Is(err, natsgo.ErrMaxPayload):
		return sink.Permanent(fmt.Errorf("nats sink: publishing to %q: message (payload and headers) larger than the server's max_payload: %w", subject, err))
	case errors.Is(err, natsgo.ErrBadSubject):
		return sink.Permanent(fmt.Errorf("nats sink: publishing to %q: invalid subject: %w", subject, err))
	case errors.Is(err, natsgo.ErrBadHeaderMsg):
		return sink.Permanent(fmt.Errorf("nats sink: publishing to %q: invalid header name: %w", subject, err))
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, natsgo.ErrNoResponders):
		// Unavailable: an operator may create the stream, and no message must be lost or
		// spend its attempts meanwhile.
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
