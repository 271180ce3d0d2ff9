// Package redisinbox is the Redis Streams adapter of package inbox: it consumes the
// streams the redis sink appends to, through a consumer group, and applies each entry once
// with inbox.Deliver (or inbox.DeliverBatch when Config.Batch > 1).
//
//	a, err := redisinbox.New(redisinbox.Config{
//		Inbox:        in,                 // *inbox.Inbox, migrated
//		Addr:         "redis:6379",
//		StreamPrefix: "events:",          // the sink's StreamPrefix (and Streams, if any)
//		Topics:       []string{"orders"},
//		Consumer:     "orders-svc-1",     // stable across restarts
//	})
//	err = a.Run(ctx, handler)            // blocks until ctx ends
//
// # Decoding
//
// An entry is read back from the sink's field layout: the CloudEvents attributes by their
// names (id, source, specversion, type, subject, time, datacontenttype, outboxseq), h:<name>
// the user headers, data the payload; the topic is the one Config maps to the stream. An
// entry that does not decode is logged at WARN and recorded with inbox.Reject, under its id
// field or, when it has none the inbox can store, "redis:<stream>:<entry id>", then acked.
//
// # Acknowledgements and redelivery
//
// The group is created with XGROUP CREATE <stream> <group> 0 MKSTREAM when absent. New
// entries are read with XREADGROUP ... >, and acked (XACK) only after Deliver reported an
// outcome that committed. Redis has no delayed redelivery, so the adapter makes one out of
// the pending list:
//
//   - Retry (the handler failed): the entry is left pending, and once Outcome.Delay has
//     passed the adapter claims it back with XCLAIM and a min-idle time of the delay (an
//     entry another consumer claimed meanwhile stays with it). It is then delivered with
//     Redelivered set, and counted by the inbox before the handler runs.
//   - A restart: the adapter first reads its own pending entries (XREADGROUP ... 0, under
//     the same Config.Consumer name), as redeliveries, in stream order, then new ones.
//   - A dead consumer: entries pending with any consumer of the group for longer than
//     Config.ClaimMinIdle are taken over with XAUTOCLAIM (every ClaimMinIdle/2) and
//     delivered as redeliveries. ClaimMinIdle must exceed the longest handler run, or a live
//     consumer's entry is claimed and run twice at once (the inbox still applies it once);
//     and a Retry delay longer than it may be shortened by another consumer's claim.
//   - An inbox error (its database unreachable): nothing is acked nor counted; the adapter
//     tries the same entries again every second, holding them.
//
// Entries whose XACK is lost stay pending and come back through XAUTOCLAIM as duplicates.
//
// # Order
//
// One consumer applies a stream's entries in stream order. While a key's entry awaits its
// retry, the key's later entries are held in memory (pending in Redis) and applied after
// it, in order; other keys and unkeyed entries flow on. After a restart the own pending
// entries come back in stream order, without their retry delays. Not kept: order across
// several consumers of one group (Redis hands a key's entries to any of them), and across
// several streams.
package redisinbox
