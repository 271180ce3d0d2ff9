// Package kafka is the Kafka sink: it publishes outbox messages with franz-go's idempotent
// producer and reports a message as delivered only once every in-sync replica has it
// (acks=all).
//
// # Configuration
//
//	s, err := kafka.New(ctx, kafka.Config{
//		Brokers:       []string{"kafka-1:9092", "kafka-2:9092"},
//		Source:        "orders-service",
//		TopicPrefix:   "prod.",                                // orders.created → prod.orders.created
//		Topics:        map[string]string{"audit": "audit-log"}, // exact, without prefix
//		TLSEnabled:    true,
//		TLSCAFile:     "/etc/outbox/kafka-ca.pem",
//		SASLMechanism: "SCRAM-SHA-512",
//		SASLUser:      "outbox-relay",
//		SASLPassword:  os.Getenv("KAFKA_PASSWORD"),
//	})
//
// The same as YAML, once the command maps it (snake_case field names):
//
//	sink:
//	  kafka:
//	    brokers: [kafka-1:9092, kafka-2:9092]
//	    source: orders-service
//	    topic_prefix: prod.
//	    topics: {audit: audit-log}
//	    tls_enabled: true
//	    tls_ca_file: /etc/outbox/kafka-ca.pem
//	    sasl_mechanism: SCRAM-SHA-512
//	    sasl_user: outbox-relay
//	    # sasl_password: better from the environment, OUTBOX_SINK_KAFKA_SASL_PASSWORD
//	    produce_timeout: 10s
//	    compression: snappy
//
// Only Brokers is required. TLS: set Config.TLS, or TLSEnabled with optional CA, client
// certificate and key files. SASL: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; the password
// appears in no error and no log line.
//
// # Topics
//
// A message goes to the Kafka topic Config.Topics[topic] when the map has the topic, else
// Config.TopicPrefix + topic. A name Kafka cannot have (characters other than a-z, A-Z,
// 0-9, '.', '_' and '-', longer than 249, "." or "..") fails permanently and goes to the
// dead-letter table. A topic that does not exist fails with a sink.Unavailable error that
// says so, so that nothing is lost, and no attempt spent, while an operator creates it (or
// set AutoCreateTopics for brokers that create topics on demand).
//
// # Envelope
//
// Records use the CloudEvents Kafka binding in binary content mode: the record value is
// the payload and the attributes travel as headers:
//
//	ce_id           message id (UUIDv7)
//	ce_source       Config.Source
//	ce_specversion  1.0
//	ce_type         the message type (the topic when empty)
//	ce_subject      the key (absent when empty)
//	ce_time         created_at, RFC 3339
//	ce_outboxseq    Record.Seq in decimal, the message's position in its key's order (absent when <= 0)
//	content-type    the user's content-type header (datacontenttype)
//
// The user's other headers (traceparent among them) are copied as they are; a message with
// a header every sink refuses (sink.CheckHeaders: ce_*, ce-*, Nats-*, ...) fails
// permanently, so no row can spoof an attribute. The record
// key is the message key, so all messages of a key go to one partition, in order; a
// message without key has a null key and goes to any partition. An empty payload is a
// record without value, which a compacted topic takes as a tombstone for the key, as the
// binding prescribes for an event without data. The record timestamp is the time of
// publishing (ce_time carries created_at), so retention counts from publishing.
//
// # Delivery and order
//
// Publish hands the whole batch to the client without waiting and then waits for the
// acknowledgements, so a batch costs about one round trip; the client batches records
// per partition and keeps up to five requests in flight per broker. The idempotent
// producer numbers every batch, so the broker stores the client's retries (after a lost
// connection, NOT_LEADER, a timeout) once and in order. Publish returns within about
// Config.ProduceTimeout, or when its context ends: messages not acknowledged by then fail
// as unavailable and are dropped from the client's buffer, so an outage does not pile up
// copies to be delivered later.
//
// A broker refuses whole record batches: one message too large for the topic's
// max.message.bytes, or invalid for it (no key on a compacted topic), fails the others of
// its batch too. Publish then sends each of them again alone: the culprit fails
// permanently, the others are delivered. A message that does not fit in
// Config.MaxMessageBytes fails permanently before it is sent.
//
// # Errors
//
//	permanent    message too large (for the client or, alone, for the topic), invalid
//	             record, invalid topic name
//	unavailable  unknown topic (says so), SASL authentication refused, topic or cluster
//	             authorization failed (an ACL to grant: no message is at fault), no
//	             acknowledgement within the produce timeout, NOT_LEADER, REQUEST_TIMED_OUT,
//	             NOT_ENOUGH_REPLICAS and franz-go's other retriable broker errors, connection
//	             failures (the error tells the last connection error: refused, TLS, SASL), a
//	             canceled context, a closed sink
//	retryable    other broker refusals (a policy violation, a compression the topic does
//	             not take), counted toward the attempts; a batch rejection that could not
//	             be narrowed down to its culprit in time
//
// Unavailable errors are wrapped with sink.Unavailable: the relay pauses the sink and
// spends no attempt of the messages, so an outage of any length dead-letters nothing. The
// idempotent producer drops its own retried copies without telling the client, and a
// republished message (a new produce) is a new record: the sink never returns
// sink.Duplicate.
//
// # Credentials
//
// New pings the brokers once (at most 5s). When a broker answers the SASL handshake with
// SASL_AUTHENTICATION_FAILED (or refuses the mechanism), New returns an error wrapping
// ErrAuth (the outbox command exits 1 with it); when no broker answers, New logs a warning
// and returns a sink that keeps trying. Credentials refused later are logged at ERROR on
// every connection attempt, and publishing resumes once the brokers accept them.
//
// franz-go recovers from failed batches by bumping its producer epoch. A producer that
// failed beyond that (a non-retriable InitProducerID error) makes the sink replace its
// client after the failing Publish.
package kafka
