package relaytest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
)

// NextBatch returns src's next batch, or nil when none came within wait.
func NextBatch(tb testing.TB, src relay.Source, wait time.Duration) relay.Batch {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	b, err := src.Next(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Seqs returns the sequence numbers of b's records, in order.
func Seqs(b relay.Batch) []int64 {
	var out []int64
	for _, r := range b.Records() {
		out = append(out, r.Seq)
	}
	return out
}

// AllPublished is the outcome of b in which every message was published.
func AllPublished(b relay.Batch) outbox.Outcome {
	return outbox.Outcome{Published: Seqs(b)}
}
