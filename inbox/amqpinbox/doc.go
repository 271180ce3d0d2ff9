// Package amqpinbox is the RabbitMQ (AMQP 0-9-1) adapter of package inbox: a queue
// consumer that applies each message the AMQP sink published once, in the consumer's
// database, and acknowledges the delivery only after the transaction that applied it
// committed.
//
//	in, _ := inbox.New(ctx, inbox.Config{Pool: pool, Consumer: "billing"})
//	c, err := amqpinbox.New(amqpinbox.Config{
//		Inbox:            in,
//		URL:              "amqp://billing:" + password + "@rabbitmq:5672/prod",
//		Queue:            "billing.orders",  // the operator's, bound to the sink's exchange
//		RoutingKeyPrefix: "orders.",         // as the sink's: routing key orders.created → topic created
//		Prefetch:         64,
//	})
//	err = c.Run(ctx, func(ctx context.Context, tx outbox.Tx, m inbox.Message) error { ... })
//
// # Messages
//
// Deliveries are read in the CloudEvents AMQP binding the sink writes: the cloudEvents:*
// application properties (cloudEvents_* too) are the attributes (id, source, specversion,
// type, subject = the key, time, outboxseq = the position), the content-type property is
// datacontenttype (handed over as the "content-type" header), the other headers are the
// user's (a value that is not a string is handed over in its fmt form), and the body is the
// payload. The routing key maps back to the outbox topic through Config.RoutingKeys and
// Config.RoutingKeyPrefix, the way the sink maps topics forward.
//
// A delivery that does not decode (no CloudEvent, a missing or malformed attribute) is
// moved to the inbox's dead letters with inbox.Reject, logged at WARN, and acked. When it
// has no usable id, it is recorded as "amqp:<queue>:<message-id>", or, without a
// message-id, "amqp:<queue>:sha256:<hash of its routing key, headers and body>": a delivery
// tag is not stable (it changes with each redelivery), a hash is.
//
// # Acknowledgements and redeliveries
//
// A delivery is acked (basic.ack, one by one) after Deliver returned an ack outcome:
// Applied, Duplicate, Stale or DeadLettered. Nothing is acked before its commit, so a
// crash, a lost connection or a lost ack has the broker deliver the message again, with
// its redelivered flag, and the inbox finds it a Duplicate. The redelivered flag is
// Delivery.Redelivered: the inbox counts such a delivery before the handler runs, so that a
// message that crashes the consumer every time is dead-lettered after MaxAttempts.
//
// # Retries
//
// A delivery whose handler failed (Outcome.Retry) is held in the consumer, unacked, for
// Outcome.Delay and then delivered again (Redelivered) in place; it is never rejected back
// to the queue. RabbitMQ has no delay of its own here (no delayed-message plugin), and the
// alternatives cost order or attempts: a nack with requeue puts the message back at once
// (a spin), to any consumer of the queue, and a retry queue with a per-message TTL
// dead-lettering back appends the message behind the queue's later messages; a key's later
// messages held here would have to go back too, and the broker's redelivered flag would
// count an attempt of each of them on every round without their handler ever running.
// Holding keeps the order and counts only real attempts. The trade-offs:
//
//   - held deliveries occupy prefetch slots (Config.Prefetch): when every slot holds a
//     retry, or a message waiting behind one, nothing new arrives until a retry ends;
//   - a held delivery stays unacked for the whole of its retries, and RabbitMQ closes a
//     channel whose delivery stays unacked longer than its consumer_timeout (30 minutes by
//     default): keep the inbox's backoff and MaxAttempts below it (the default backoff's
//     ten attempts take about 17 minutes), or raise it; the consumer then reconnects and
//     the message comes back redelivered, its attempts kept;
//   - if the consumer stops, held deliveries go back to the queue, redelivered.
//
// When the inbox itself fails (database unreachable), the delivery is tried again after
// Config.ErrorDelay, counting nothing.
//
// # Order
//
// A key's messages are applied in the order the queue delivers them to this consumer:
// while one of a key's messages waits for its retry, its later messages wait behind it
// (held, in prefetch); other keys and unkeyed messages go on. The order holds with one
// consumer per queue. With several consumers on one queue (competing consumers), RabbitMQ
// spreads a key's messages over them and they are applied concurrently, in no order; use
// one queue per consumer (a consistent-hash exchange, or single active consumer) where
// order matters. After a lost connection, the broker requeues the unacked messages at
// their positions; a message requeued while later ones of its key are delivered to
// another consumer loses its order to them.
//
// # Batches
//
// With Config.Batch > 1, up to Batch of the deliveries that have arrived are applied in
// one transaction (inbox.DeliverBatch), without waiting for more; a retried delivery goes
// alone, so that its handler does not run twice (the batch's transaction, then the
// inbox's one-by-one pass).
//
// # Connection
//
// Run dials Config.URL, opens a channel with Qos(Prefetch) and consumes the queue with
// manual acks. When the connection or the channel is lost, the unacked deliveries return
// to the queue (redelivered) and Run reconnects with backoff from Config.ReconnectWait up
// to 30 s, logging at WARN; the password in the URL is never logged. Run returns an error
// only when the broker refuses the first connection (credentials, virtual host). It also
// runs the inbox's Redrive (retried dead letters) and, unless Config.RetentionInterval is
// negative, its retention.
package amqpinbox
