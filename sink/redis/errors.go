package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/internal/unavail"
)

// ErrAuth is wrapped by the error New returns when Redis refuses the sink's username or
// password (NOAUTH, WRONGPASS, a password for a server that has none): a configuration the
// sink cannot work with, reported at start instead of retried. At runtime (credentials
// changed on the server after New) every new connection tries them again, and Publish fails
// with sink.Unavailable errors until Redis accepts them.
var ErrAuth = errors.New("redis sink: authentication refused")

// isAuthErr reports whether err is Redis refusing the connection's credentials.
func isAuthErr(err error) bool {
	return goredis.IsAuthError(err) || goredis.HasErrorPrefix(err, "AUTH ") || goredis.HasErrorPrefix(err, "invalid password")
}

// sinkWide reports whether a publish failure is the sink's as a whole rather than the
// message's: anything that is not a reply from Redis (dial, reset, EOF, timeouts, the
// publish timeout or the caller's context, a closed pool or sink, no reply), and the replies
// that say the server cannot take writes now: authentication and ACL (NOAUTH, WRONGPASS,
// NOPERM), OOM (maxmemory reached: every write fails until memory is freed, whatever the
// message), max clients, LOADING, READONLY, MASTERDOWN, CLUSTERDOWN, TRYAGAIN, NOREPLICAS,
// BUSY and MISCONF (persistence failing).
func sinkWide(err error) bool {
	var reply goredis.Error
	if !errors.As(err, &reply) {
		return true
	}
	if isAuthErr(err) || goredis.IsPermissionError(err) || goredis.IsOOMError(err) || goredis.IsMaxClientsError(err) ||
		goredis.IsLoadingError(err) || goredis.IsReadOnlyError(err) || goredis.IsMasterDownError(err) ||
		goredis.IsClusterDownError(err) || goredis.IsTryAgainError(err) || goredis.IsNoReplicasError(err) {
		return true
	}
	// The same by the reply's prefix, for replies go-redis does not type (proxies, forks).
	for _, prefix := range sinkWidePrefixes {
		if goredis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}

// sinkWidePrefixes start the error replies of a server that cannot take writes now.
var sinkWidePrefixes = []string{
	"NOAUTH", "WRONGPASS", "NOPERM", "OOM", "max number of clients", "LOADING", "READONLY",
	"MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS", "BUSY", "MISCONF",
}

// markUnavailable wraps every sink-wide result of res with sink.Unavailable.
func markUnavailable(res []error) { unavail.Mark(res, sinkWide) }

// classify turns an XADD result into a sink result: permanent for what no retry can fix
// (the key holds another type), retryable for everything an operator or time can fix.
// Publish then marks the sink-wide ones (see sinkWide) with sink.Unavailable.
func classify(err error, stream string, parent context.Context, timeout time.Duration) error {
	if err == nil {
		return nil
	}
	switch {
	case goredis.HasErrorPrefix(err, "WRONGTYPE"):
		return sink.Permanent(fmt.Errorf("redis sink: XADD to %q: the key holds a value that is not a stream: %w", stream, err))
	case goredis.IsOOMError(err):
		return fmt.Errorf("redis sink: XADD to %q: Redis is out of memory (maxmemory reached; trim streams with max_len or raise the limit); will retry: %w", stream, err)
	case goredis.IsMaxClientsError(err):
		return fmt.Errorf("redis sink: XADD to %q: Redis refused the connection (maxclients reached); will retry: %w", stream, err)
	case isAuthErr(err), goredis.IsPermissionError(err):
		// An operator fixes credentials or ACLs; the message must not be lost meanwhile.
		return fmt.Errorf("redis sink: XADD to %q: not authorized (check the username, password and ACL); will retry: %w", stream, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		if perr := parent.Err(); perr != nil {
			return fmt.Errorf("redis sink: XADD to %q: %w", stream, perr)
		}
		return fmt.Errorf("redis sink: XADD to %q: no reply within the publish timeout of %s: %w", stream, timeout, context.DeadlineExceeded)
	default:
		// Network errors, closed connections, pool timeouts, and server errors that are not
		// about the message itself (READONLY, LOADING, MASTERDOWN, CLUSTERDOWN, TRYAGAIN,
		// unknown ones): retrying is the safe choice, and a message that keeps failing
		// reaches the dead-letter table after max_attempts.
		return fmt.Errorf("redis sink: XADD to %q: %w", stream, err)
	}
}
