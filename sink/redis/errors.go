package redis

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox/sink"
)

// classify turns an XADD result into a sink result: permanent for what no retry can fix
// (the key holds another type), retryable for everything an operator or time can fix.
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
	case goredis.IsAuthError(err), goredis.IsPermissionError(err):
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
