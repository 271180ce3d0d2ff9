package inbox

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/outboxgo/outbox"
)

// processedChunk bounds the ids of one Processed statement (bind parameters).
const processedChunk = 500

// Processed reports whether every message of ids is recorded as processed by the consumer:
// applied, or found Stale, dead-lettered or rejected (all of which record the id). It reads
// the inbox's own database (Config.Pool or Config.DB), so it sees only committed
// deliveries. An id whose record aged out (Retention) reads as not processed. No ids
// reports true.
//
// It is what a reader waits on to see the effects of messages it knows the ids of (the
// listen package's WaitApplied).
func (in *Inbox) Processed(ctx context.Context, ids ...string) (bool, error) {
	uniq := make([]string, 0, len(ids))
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		switch {
		case id == "":
			return false, fmt.Errorf("%w: empty id", ErrInvalidMessage)
		case len(id) > MaxIDBytes:
			return false, fmt.Errorf("%w: id longer than %d bytes", ErrInvalidMessage, MaxIDBytes)
		case !utf8.ValidString(id):
			return false, fmt.Errorf("%w: id must be UTF-8", ErrInvalidMessage)
		}
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			uniq = append(uniq, id)
		}
	}
	for start := 0; start < len(uniq); start += processedChunk {
		chunk := uniq[start:min(start+processedChunk, len(uniq))]
		args := make([]any, 0, len(chunk)+1)
		args = append(args, in.cfg.Consumer)
		for _, id := range chunk {
			args = append(args, id)
		}
		var n int
		if err := in.db.queryRow(ctx, in.processedQuery(len(chunk)), args...).Scan(&n); err != nil {
			return false, fmt.Errorf("inbox: looking up %d processed ids: %w", len(chunk), err)
		}
		if n < len(chunk) {
			return false, nil
		}
	}
	return true, nil
}

// processedQuery counts the processed rows of the consumer among n ids.
func (in *Inbox) processedQuery(n int) string {
	var b strings.Builder
	b.WriteString(`SELECT count(*) FROM `)
	if in.cfg.Dialect == outbox.MySQL {
		b.WriteString(in.table.QuotedMySQL())
	} else {
		b.WriteString(in.table.Quoted())
	}
	b.WriteString(` WHERE consumer = ? AND message_id IN (`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('?')
	}
	b.WriteByte(')')
	if in.cfg.Dialect == outbox.Postgres {
		return dollars(b.String())
	}
	return b.String()
}
