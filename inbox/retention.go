package inbox

import (
	"context"
	"fmt"
	"time"
)

// DefaultRetentionBatch is the batch size of RunRetention.
const DefaultRetentionBatch = 1000

// DeleteExpired deletes this consumer's processed ids older than Retention, positions of
// keys idle for longer than KeyRetention and attempt counts untouched for Retention (dead
// letters stay until purged or retried). It deletes in batches of at
// most batch rows, one short statement per batch, and returns how many rows it deleted.
func (in *Inbox) DeleteExpired(ctx context.Context, batch int) (int64, error) {
	if batch <= 0 {
		batch = DefaultRetentionBatch
	}
	now := time.Now()
	ids := micros(now.Add(-in.cfg.Retention))
	keys := micros(now.Add(-in.cfg.KeyRetention))
	var total int64
	for _, step := range []struct {
		what, query string
		cutoff      int64
	}{
		{"processed ids", in.q.expireProcessed, ids},
		{"key positions", in.q.expireKeys, keys},
		{"attempt counts", in.q.expireAttempts, ids},
	} {
		for {
			n, err := in.db.exec(ctx, step.query, in.cfg.Consumer, step.cutoff, batch)
			if err != nil {
				return total, fmt.Errorf("inbox: deleting expired %s: %w", step.what, err)
			}
			total += n
			if n < int64(batch) {
				break
			}
		}
	}
	return total, nil
}

// RunRetention runs DeleteExpired now and then every interval (default one hour) until ctx
// is done, logging its errors to Config.Logger. It returns ctx's error.
func (in *Inbox) RunRetention(ctx context.Context, interval time.Duration) error {
	logger := in.cfg.Logger
	if interval <= 0 {
		interval = time.Hour
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := in.DeleteExpired(ctx, DefaultRetentionBatch); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			logger.ErrorContext(ctx, "inbox retention", "consumer", in.cfg.Consumer, "error", err)
		} else if n > 0 {
			logger.DebugContext(ctx, "inbox retention", "consumer", in.cfg.Consumer, "deleted", n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
