// Package kafkainbox is the Kafka adapter of package inbox: a franz-go consumer-group member
// that applies each record the Kafka sink published once, in the consumer's database, and
// commits the record's offset only after the transaction that applied it committed.
//
//	in, _ := inbox.New(ctx, inbox.Config{Pool: pool, Consumer: "billing"})
//	c, err := kafkainbox.New(kafkainbox.Config{
//		Inbox:   in,
//		Brokers: []string{"kafka-1:9092"},
//		Group:   "billing",
//		Topics:  []string{"orders.created"}, // outbox topics
//		TopicPrefix: "prod.",                // as the sink's
//	})
//	err = c.Run(ctx, func(ctx context.Context, tx outbox.Tx, m inbox.Message) error { ... })
//
// # Records
//
// Records are read in the CloudEvents Kafka binding the sink writes: the ce_* headers are
// the attributes (ce_id, ce_source, ce_specversion, ce_type, ce_subject = the key, ce_time,
// ce_outboxseq = the position), content-type is datacontenttype (handed over as the
// "content-type" header), other headers are the user's and the value is the payload. A Kafka
// topic maps back to its outbox topic through Config.TopicMap and Config.TopicPrefix, the way
// the sink maps it forward. A record that does not decode (no CloudEvent, a missing or
// malformed attribute, an attribute header given twice) is moved to the inbox's dead letters
// with inbox.Reject — under the id "kafka:<topic>:<partition>:<offset>" when it has no
// usable id — logged at WARN, and committed past.
//
// # Offsets
//
// The offset of a record is committed to Kafka after the transaction that applied it
// committed, never in it. Storing offsets in the consumer's database, in the same
// transaction, would spare the redelivery of what was applied but not yet committed to
// Kafka; but the inbox already turns every such redelivery into a Duplicate (one
// statement, no handler call), so the second store of offsets would buy nothing but a
// table to keep and a custom assignment (seeking to the stored offsets) to get right. A
// crash, or a commit that fails, between the two commits costs only those duplicates.
//
// Offsets are committed synchronously per partition: after the first delivery since the
// assignment, after each poll's records are applied, every thousand records within one,
// before a retry waits, and when the partition is revoked or the consumer stops.
// Auto-commit is off.
//
// # Rebalances
//
// Each assigned partition has a worker goroutine; the poll loop hands it the partition's
// records and goes on polling (BlockRebalanceOnPoll keeps rebalances out of the short
// hand-over, so records are only ever handed to a partition this member owns). When
// partitions are revoked (or lost), their workers finish the transaction they are in,
// commit the offset of what they applied and stop before the rebalance goes on; the new
// owner starts at that offset. What a member applied and could not commit (it was lost,
// or crashed) is delivered to the next owner again and found Duplicate.
//
// # Redelivered
//
// Kafka does not tell whether a record was delivered before. The adapter marks as
// Redelivered (inbox.Delivery) the records delivered before the partition's first
// successful commit since this member was assigned it (in practice its first record, or
// first batch, since that commit follows at once; more when that record is retried): a
// previous owner may have read them, and crashed on them. The inbox then counts their attempt before the handler runs, so that a
// record that crashes the process every time is dead-lettered after MaxAttempts. A
// previous owner may have got further than the new owner's first commit: a record past it
// that crashed the previous owner is not counted the first time again, but each owner
// commits up to the chunk before the crash, so the record ends up in some owner's first
// poll and is counted from then on.
//
// # Retries and order
//
// A record whose handler failed (Outcome.Retry) is delivered again in place: the worker
// waits Outcome.Delay (the inbox's backoff) and delivers it again with Redelivered set;
// the partition's later records wait for it, since an offset cannot be committed past a
// record not applied. Other partitions keep flowing. After MaxAttempts the inbox
// dead-letters the record and the partition moves on. When the inbox itself fails
// (database unreachable), the record is delivered again after Config.ErrorDelay, without
// counting an attempt.
//
// So records are applied in partition order, which holds each key's order (the sink keys
// records by message key, so a key's records share a partition), and unkeyed records of a
// partition wait behind a retry too. Across topics, and across partitions, there is no
// order. A key's order holds across rebalances (one owner at a time, starting where the
// last one committed) as long as the topic's partition count does not change (which moves
// keys to other partitions).
//
// # Batches
//
// With Config.Batch > 1 a worker applies up to Batch records of what the poll returned for
// its partition in one transaction (inbox.DeliverBatch); it never waits for more records.
// When a handler fails, the inbox applies the others one by one and the failed record (and
// later ones of its key, ErrKeyBlocked) is retried in place as above.
//
// Run also runs the inbox's Redrive (retried dead letters) and, unless
// Config.RetentionInterval is negative, its retention.
package kafkainbox
