// Package mqttinbox is the inbox adapter for MQTT 5: it consumes what the MQTT sink
// (sink/mqtt) publishes and applies each message once through package inbox.
//
//	c, err := mqttinbox.New(mqttinbox.Config{
//		Inbox:       in,                     // an *inbox.Inbox on the consumer's database
//		Broker:      "tcp://mosquitto:1883",
//		ClientID:    "billing-consumer-1",   // the persistent session: stable, unique
//		TopicPrefix: "events/",              // the sink's topic_prefix (and topic_separator)
//	})
//	err = c.Run(ctx, handler)               // blocks until ctx ends
//
// # Session and acknowledgement
//
// The consumer connects with Clean Start 0 and a Session Expiry Interval (SessionExpiry,
// default one hour), and subscribes to Filter (default TopicPrefix + "#") at QoS 1 on every
// connection. The broker keeps the session while the consumer is away or reconnecting: the
// messages published meanwhile, and those delivered but not acknowledged, which it resends
// on the next connection. A message is acknowledged (PUBACK, paho's manual acknowledgement)
// only after Deliver returned an ack outcome: Applied, Duplicate, Stale or DeadLettered. The
// subscription must exist before the sink publishes (MQTT keeps nothing for topics nobody
// subscribes to): run the consumer once, or create the session, before the producer starts.
// A session that expired is lost with its messages; SessionExpiry must exceed any outage.
//
// A broker may also drop messages from a session it holds too many for, and the consumer is
// not told. Mosquitto's max_queued_messages (default 1000) counts, while the consumer is
// disconnected, every QoS 1 message of the session: those delivered but not acknowledged
// (PUBACKs held back behind a message awaiting its retry among them) as well as those queued
// since; it drops what arrives beyond it, logging "Outgoing messages are being dropped for
// client <id>". Set it to 0 (no limit; max_queued_bytes bounds the session instead), or above
// what the session can hold after the longest consumer outage.
//
// # Redelivered
//
// Delivery.Redelivered is the PUBLISH's DUP flag, which a broker sets when it resends a
// message it sent before without getting the PUBACK (after a reconnect or a consumer
// restart); Mosquitto sets it (TestRedeliveredAfterCrash shows a handler that crashes the
// process being counted and dead-lettered). A message the adapter retries in place is
// delivered again with Redelivered true.
//
// # Retries and order
//
// MQTT has no negative acknowledgement. When the handler fails (Outcome.Retry), the adapter
// keeps the message and delivers it again after Outcome.Delay; meanwhile the later messages
// of its key wait behind it, in order, and the other keys' messages go on. When the inbox
// itself fails (its database), the message is delivered again after RetryPause, its
// Redelivered flag unchanged. A message that does not decode is recorded with inbox.Reject
// and acknowledged.
//
// MQTT requires PUBACKs in the order the messages arrived, and paho sends them so: while a
// message awaits its retry, the PUBACKs of the messages after it (applied, of other keys)
// are held back, and the broker sends at most ReceiveMaximum unacknowledged messages
// (Mosquitto 2.0 honours it for MQTT 5 clients: the chaos checker saw about 450 in flight to
// one consumer). So the other keys keep flowing
// for that many messages, then everything waits for the retried one (at most until it is
// dead-lettered after MaxAttempts). If the connection drops meanwhile, the broker resends
// all the unacknowledged messages: those already applied are Duplicates, and the one
// awaiting its retry waits out the rest of its delay.
//
// Order kept: a key's messages are applied in the order the broker delivers them on the
// subscription, which for one publisher's QoS 1 messages is the order they were published
// (the sink publishes a key's messages in order on one connection). Not kept: across
// consumers of a shared subscription ($share/...), which the broker spreads without regard
// to keys; across several subscriptions or filters that overlap (a message matched twice is
// delivered twice, a Duplicate the second time); across publishers (two relays of one
// outbox). Unkeyed messages have no order.
//
// # Topics and envelope
//
// The MQTT topic maps back to the outbox topic by removing TopicPrefix and replacing every
// TopicSeparator (default "/") by ".": exact for outbox topics that contain no separator
// character (set TopicSeparator "." on both sides to keep topics as they are). A message
// outside TopicPrefix is rejected. The CloudEvents MQTT binding is read as the sink writes
// it: the Content Type property is datacontenttype, the user properties named id, source,
// specversion, type, subject, time, dataschema and outboxseq are attributes, the other user
// properties are the user headers, the payload is the body. A user property that appears
// twice makes the message unreadable.
//
// A message rejected without a usable id is recorded as "mqtt:<topic>:<hash>", the hash a
// SHA-256 of the topic, content type, user properties and payload: the same for every
// redelivery, unlike the packet id, which the broker reuses once a message is acknowledged
// (two unreadable messages sharing one would make the second a Duplicate, silently dropped).
//
// # Batches
//
// With Batch > 1 the adapter runs DeliverBatch over the messages that have arrived, up to
// Batch, without waiting for more; a failing message falls back to one-by-one delivery
// inside DeliverBatch, so its handler may run twice for one delivery (once in the rolled
// back batch).
//
// # Outages
//
// Run reconnects through broker outages with exponential backoff up to 10s, logging at WARN,
// and resumes the session. It returns an error wrapping ErrRefused when the broker refuses
// the credentials, the client id or the subscription. It also runs the inbox's RunRedrive and,
// unless RetentionInterval is negative, RunRetention.
package mqttinbox
