package listen

import (
	"context"
	"fmt"
	"time"
)

// Poll delays of WaitApplied: the first check is immediate, then the delay doubles from
// waitFirst up to waitMax.
const (
	waitFirst = 2 * time.Millisecond
	waitMax   = 100 * time.Millisecond
)

// WaitApplied waits, at most maxWait, until every event of tok is recorded as processed by
// the self-consumer's inbox (Inbox.Processed), polling with a doubling delay (2 ms to
// 100 ms). It returns nil at once for a zero token, an error wrapping ErrNotApplied and
// context.DeadlineExceeded when maxWait passes first, ctx's error when ctx ends first, and
// the inbox's error when it cannot be read. With maxWait <= 0 it checks once.
//
// Processed includes events the inbox dead-lettered (after MaxAttempts failures): their
// state was not applied; the dead letters tell. An event processed longer ago than the
// inbox's Retention is no longer recorded: an old token times out.
func (s *Service) WaitApplied(ctx context.Context, tok Token, maxWait time.Duration) error {
	if tok.IsZero() {
		return nil
	}
	ids := tok.IDs()
	start := time.Now()
	deadline := start.Add(maxWait)
	delay := waitFirst
	for {
		ok, err := s.cfg.Inbox.Processed(ctx, ids...)
		switch {
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("listen: waiting for %d events: %w", len(ids), ctx.Err())
		case err != nil:
			return fmt.Errorf("listen: waiting for %d events: %w", len(ids), err)
		case ok:
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%w: %d events not all applied after %v: %w", ErrNotApplied, len(ids), time.Since(start).Round(time.Millisecond), context.DeadlineExceeded)
		}
		t := time.NewTimer(min(delay, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("listen: waiting for %d events: %w", len(ids), ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, waitMax)
	}
}
