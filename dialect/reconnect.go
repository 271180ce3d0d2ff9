package dialect

import (
	"context"
	"log/slog"
	"time"
)

// Reconnect runs session until ctx ends, and again after each return, waiting 100 ms after
// the first loss and twice as long after each further one, up to 5 s; the wait starts over
// once session calls connected. Each loss is logged as lost, with the error and the wait. It
// is the reconnect loop of the stores' commit listeners (Notifier.Listen), and returns nil.
func Reconnect(ctx context.Context, logger *slog.Logger, lost string, session func(ctx context.Context, connected func()) error) error {
	const first, most = 100 * time.Millisecond, 5 * time.Second
	delay := first
	for ctx.Err() == nil {
		err := session(ctx, func() { delay = first })
		if ctx.Err() != nil {
			return nil
		}
		logger.Warn(lost, slog.Any("error", err), slog.Duration("retry_in", delay))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, most)
	}
	return nil
}
