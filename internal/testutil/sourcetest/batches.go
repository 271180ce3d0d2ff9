package sourcetest

import "github.com/outboxgo/outbox/relay/relaytest"

// Batch helpers shared with relay/relaytest (see there).
var (
	// Next returns a source's next batch, or nil when none came within the wait.
	Next = relaytest.NextBatch
	// Seqs returns the sequence numbers of a batch's records, in order.
	Seqs = relaytest.Seqs
	// Published is the outcome of a batch in which every message was published.
	Published = relaytest.AllPublished
)
