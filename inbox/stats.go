package inbox

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/sqlident"
)

// MaxCountedProcessed bounds the processed ids Stats counts: a count stops there
// (Stats.ProcessedCapped), so that it stays cheap whatever the retention window holds.
const MaxCountedProcessed = 100_000

// Stats are an inbox's figures for its consumer.
type Stats struct {
	// Processed counts the processed ids the inbox keeps (within Retention), at most
	// MaxCountedProcessed; ProcessedCapped says the count stopped there.
	Processed       int64
	ProcessedCapped bool
	// LastProcessedAt is when the latest kept id was processed (zero when none is kept).
	LastProcessedAt time.Time
	// DeadLetters counts the dead letters not marked for a retry.
	DeadLetters int64
}

// Table returns the configured (or default) processed-ids table.
func (in *Inbox) Table() string { return in.cfg.Table }

// Stats reads the inbox's figures for its consumer in one statement, every part of which is a
// read of an index of the consumer's rows: the processed ids (primary key, the count bounded
// by MaxCountedProcessed), the latest processed_at (its index) and the dead letters not
// retried (their index).
func (in *Inbox) Stats(ctx context.Context) (Stats, error) {
	quote := sqlident.Table.Quoted
	if in.cfg.Dialect == outbox.MySQL {
		quote = sqlident.Table.QuotedMySQL
	}
	p, dead := quote(in.table), quote(in.table.Derived("_dead"))
	q := `SELECT (SELECT count(*) FROM (SELECT 1 FROM ` + p + ` WHERE consumer = ? LIMIT ` + strconv.Itoa(MaxCountedProcessed+1) + `) AS c),
  (SELECT coalesce(max(processed_at), 0) FROM ` + p + ` WHERE consumer = ?),
  (SELECT count(*) FROM ` + dead + ` WHERE consumer = ? AND retried_at IS NULL)`
	if in.cfg.Dialect == outbox.Postgres {
		q = dollars(q)
	}
	var (
		st Stats
		at int64
	)
	c := in.cfg.Consumer
	if err := in.db.queryRow(ctx, q, c, c, c).Scan(&st.Processed, &at, &st.DeadLetters); err != nil {
		return Stats{}, fmt.Errorf("inbox: reading stats: %w", err)
	}
	if st.Processed > MaxCountedProcessed {
		st.Processed, st.ProcessedCapped = MaxCountedProcessed, true
	}
	st.LastProcessedAt = fromMicros(at)
	return st, nil
}
