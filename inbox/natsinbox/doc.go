// Package natsinbox is the NATS JetStream adapter of package inbox: it consumes a stream the
// nats sink publishes to, through a durable pull consumer, and applies each message once
// with inbox.Deliver (or inbox.DeliverBatch when Config.Batch > 1).
//
//	a, err := natsinbox.New(natsinbox.Config{
//		Inbox:         in,                // *inbox.Inbox, migrated
//		URL:           "nats://nats:4222",
//		Stream:        "ORDERS",
//		SubjectPrefix: "orders.",         // the sink's SubjectPrefix
//		Batch:         100,
//	})
//	err = a.Run(ctx, handler)            // blocks until ctx ends
//
// # Decoding
//
// A message is read back from the CloudEvents NATS binding the sink writes (binary mode):
// the ce- headers (in any letter case) are the attributes, percent-decoded; Nats- headers
// are JetStream's and ignored; the other headers are the user's; the subject without
// Config.SubjectPrefix is the topic. A message that does not decode (no ce-id, a bad time,
// a subject without the prefix...) is logged at WARN and recorded with inbox.Reject, under
// its ce-id or, when it has none the inbox can store, "nats:<stream>:<stream sequence>",
// then acknowledged.
//
// # Acknowledgements
//
// The consumer uses explicit acks. A message is acked only after Deliver reported an
// outcome that committed (Applied, Duplicate, Stale, DeadLettered). The ack is a plain Ack,
// not DoubleAck: an ack that is lost brings a redelivery, which the inbox answers as a
// Duplicate, whereas DoubleAck would cost a round trip per message. When the handler
// fails (Outcome.Retry) the message is nacked with NakWithDelay(Outcome.Delay); its
// redelivery has NumDelivered > 1, which the adapter passes as Delivery.Redelivered, so that
// the inbox counts it before the handler runs (a handler that crashes the process gets
// dead-lettered too). When the inbox itself fails (its database is unreachable), nothing is
// acked nor counted: the adapter tries the same messages again every second, holding them.
//
// While it holds a message unacknowledged (being delivered, queued, or held behind a retry,
// below) the adapter signals InProgress every AckWait/3, so a long handler does not get its
// message redelivered while it runs. Messages JetStream has sent but the adapter has not
// taken yet (at most 2×Batch, or 64, in the pull buffer) are not covered: their AckWait
// runs, and a very slow consumer may see them redelivered, as Duplicates.
//
// Config.MaxDeliver must exceed the inbox's MaxAttempts (or be -1, the default): the inbox
// dead-letters a message on its delivery MaxAttempts+1, and JetStream must not give up on it
// first.
//
// # Order
//
// One consumer process applies a key's messages in the order JetStream delivers them,
// which is stream order for a single consumer. While a key's message awaits its retry, the
// key's later messages are held in memory, unacknowledged (they count toward
// MaxAckPending), and are applied after it, in order; other keys and unkeyed messages flow
// on. If the retried message does not come back within its delay plus AckWait plus 5 s
// (deleted from the stream, taken by another process), its key's held messages are
// released. At shutdown the adapter naks what it holds: queued messages at once, held ones
// a second after their key's retry is due.
//
// Not kept: order across several processes on one durable consumer (JetStream hands a
// key's messages to any of them); order after a crash (held messages come back after
// AckWait, possibly before the message they waited for); and JetStream's own reordering of
// redeliveries (a message whose ack or nak was lost comes back after AckWait, behind later
// ones).
//
// # Throughput
//
// In batch mode the adapter runs DeliverBatch over the messages that have arrived, up to
// Batch, without waiting to fill a batch: one transaction, one commit for many messages.
// See the package benchmarks (BenchmarkConsume) for figures.
package natsinbox
