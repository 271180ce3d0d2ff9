// Package unavail marks the results of a Publish call that are failures of the sink as a
// whole, so that every sink applies its classification to every result it returns, the
// early ones (closed, not connected, context ended) included.
package unavail

import "github.com/outboxgo/outbox/sink"

// Mark wraps with sink.Unavailable every result of res for which sinkWide reports true.
// Successes, duplicates, permanent and already unavailable results stay as they are.
func Mark(res []error, sinkWide func(error) bool) {
	for i, err := range res {
		if err != nil && !sink.IsDuplicate(err) && !sink.IsPermanent(err) && !sink.IsUnavailable(err) && sinkWide(err) {
			res[i] = sink.Unavailable(err)
		}
	}
}
