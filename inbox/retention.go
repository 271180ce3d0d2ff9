package inbox

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/outboxgo/outbox"
)

// DefaultRetentionBatch is the batch size of RunRetention.
const DefaultRetentionBatch = 1000

// DeleteExpired deletes this consumer's processed ids older than Retention, positions of
// keys idle for longer than KeyRetention and attempt counts untouched for Retention (dead
// letters stay until purged or retried). It deletes in batches of at most batch rows, one
// short transaction per batch, and returns how many rows it deleted.
//
// With each batch of ids it deletes, it keeps the greatest position of each of their keys in
// <table>_keys (the fold), in the same transaction: a late copy of a message then finds
// either its id or a position at least its own. A key's position is kept for KeyRetention
// after the last fold that moved or touched it.
func (in *Inbox) DeleteExpired(ctx context.Context, batch int) (int64, error) {
	if batch <= 0 {
		batch = DefaultRetentionBatch
	}
	now := time.Now()
	ids := micros(now.Add(-in.cfg.Retention))
	keys := micros(now.Add(-in.cfg.KeyRetention))
	var total int64
	for {
		n, err := in.expireProcessed(ctx, ids, batch, micros(now))
		total += n
		if err != nil {
			return total, fmt.Errorf("inbox: deleting expired processed ids: %w", err)
		}
		if n < int64(batch) {
			break
		}
	}
	for _, step := range []struct {
		what, query string
		cutoff      int64
	}{
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

// foldChunk is how many keys one fold statement of MySQL and SQLite upserts (4 placeholders
// each, far below either's limit).
const foldChunk = 250

// expireProcessed deletes one batch of ids processed before cutoff and folds their keys'
// positions into <table>_keys, in one transaction (on PostgreSQL one statement); it returns
// how many ids it deleted.
func (in *Inbox) expireProcessed(ctx context.Context, cutoff int64, batch int, now int64) (int64, error) {
	c := in.cfg.Consumer
	if in.cfg.Dialect == outbox.Postgres {
		var n int64
		err := in.db.queryRow(ctx, in.q.expireProcessedPG, c, cutoff, batch, now).Scan(&n)
		return n, err
	}
	var deleted int64
	err := in.db.inTx(ctx, func(r runner) error {
		// MySQL locks the batch (SELECT ... FOR UPDATE), SQLite deletes it (DELETE ...
		// RETURNING: the transaction's first statement takes the write lock).
		var ids []any
		folded := make(map[string]int64)
		err := r.query(ctx, in.q.takeExpired, []any{c, cutoff, batch}, func(scan func(...any) error) error {
			var (
				id, key string
				pos     int64
			)
			if err := scan(&id, &key, &pos); err != nil {
				return err
			}
			ids = append(ids, id)
			if key != "" && pos > 0 {
				folded[key] = max(folded[key], pos)
			}
			return nil
		})
		if err != nil {
			return err
		}
		keys := slices.Sorted(maps.Keys(folded)) // in key order: concurrent runs cannot deadlock
		for chunk := range slices.Chunk(keys, foldChunk) {
			args := make([]any, 0, 4*len(chunk))
			for _, k := range chunk {
				args = append(args, c, k, folded[k], now)
			}
			tuples := strings.Repeat("(?, ?, ?, ?), ", len(chunk))
			if _, err := r.exec(ctx, in.q.foldKeysHead+tuples[:len(tuples)-2]+in.q.foldKeysTail, args...); err != nil {
				return fmt.Errorf("folding the positions of %d keys: %w", len(chunk), err)
			}
		}
		if in.cfg.Dialect == outbox.MySQL && len(ids) > 0 {
			for chunk := range slices.Chunk(ids, 4*foldChunk) {
				marks := strings.Repeat("?, ", len(chunk))
				if _, err := r.exec(ctx, in.q.deleteIDs+marks[:len(marks)-2]+")", append([]any{c}, chunk...)...); err != nil {
					return err
				}
			}
		}
		deleted = int64(len(ids))
		return nil
	})
	if err != nil {
		return 0, err
	}
	return deleted, nil
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
