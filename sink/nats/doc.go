// Package nats is the NATS JetStream sink: it publishes outbox messages to JetStream
// subjects and reports a message as delivered only once JetStream acknowledged storing it.
//
// # Subjects and streams
//
// A message goes to the subject Config.SubjectPrefix + topic. Some stream must capture that
// subject: create it yourself, or set Config.Stream and the sink creates (or updates) it
// before publishing. A message whose subject no stream captures fails with a
// sink.Unavailable error that says so, so that nothing is lost, and no attempt spent, while
// an operator creates the stream. A topic that is not a valid NATS subject (whitespace, a *
// or > token, an empty token) fails permanently and goes to the dead-letter table.
//
// # Envelope
//
// Messages use the CloudEvents NATS binding in binary mode: the payload is the message body,
// and the attributes travel as headers:
//
//	ce-id               message id (UUIDv7)
//	ce-source           Config.Source
//	ce-specversion      1.0
//	ce-type             the message type (the topic when empty)
//	ce-subject          the key (absent when empty)
//	ce-time             created_at, RFC 3339
//	ce-datacontenttype  the user's content-type header (absent when none)
//	ce-outboxseq        Record.Seq in decimal, the message's position in its key's order (absent when <= 0)
//	Nats-Msg-Id         message id, for JetStream's duplicate detection
//
// As the binding requires (3.1.3.1, 3.1.3.2), datacontenttype is ce-datacontenttype, not
// content-type, and ce- values are percent-encoded: space, '"', '%' and every byte outside
// printable ASCII become %XX. The user's other headers are copied as they are. A message
// with a header JetStream would act on (Nats-Msg-Id, Nats-Expected-*, Nats-Rollup, Nats-TTL,
// any Nats-*), or another one every sink refuses (sink.CheckHeaders: ce-*, ...), fails
// permanently: a row must not roll up the stream or set its own dedupe id.
//
// # Delivery and order
//
// Publish sends the whole batch without waiting between messages and then waits for the
// acknowledgements, so a batch costs about one round trip. A PubAck flagged as duplicate is
// a success, reported as a sink.Duplicate result naming the stream and the sequence of the
// copy it holds: JetStream drops a message whose Nats-Msg-Id it saw within the stream's
// duplicate window, two minutes by default, which turns the relay's retries after a crash
// into no-ops, but also drops a different message that reuses an id, which the relay then
// logs.
//
// Messages of a batch are sent in order on one connection, so JetStream stores them in that
// order. If the connection drops during a batch the sink sends nothing more of it: a later
// message must not be stored ahead of an earlier one that was lost with the connection.
// A message JetStream rejects does not hold back messages already sent behind it; the relay
// orders retries per key.
//
// JetStream acknowledges a message once it is in the stream's store, which by default
// flushes to disk every two minutes (sync_interval); for acknowledgement only after fsync,
// run the server with sync_interval: always, or use replicated streams.
//
// # Failures
//
// Each result is one of three kinds. sink.Unavailable, the sink as a whole cannot publish
// and the relay pauses it without spending the message's attempts: not connected, the
// connection closed, draining or re-established during the batch, credentials refused, no
// responders (no stream captures the subject, or no JetStream), no PubAck within
// Config.PublishTimeout or before the caller's context ended, the sink closed, and JetStream
// API errors with a 5xx code (storage, leadership, a stream full with discard new).
// sink.Permanent, the message itself is refused: larger than the server's max_payload, an
// invalid subject or header, and JetStream API errors with a 4xx code (larger than the
// stream's max_msg_size, a failed Nats-Expected-* expectation, a sealed stream). Plain
// retryable, counted toward the message's attempts: anything else, such as a malformed
// reply. A subject the user may not publish to gets no PubAck (the server only logs the
// permissions violation) and so fails as Unavailable after the publish timeout.
//
// # Outages and credentials
//
// A connection the sink makes reconnects forever, also when NATS is down when New is
// called. While it is down, Publish fails at once with Unavailable errors instead of
// buffering, and publishing resumes by itself after the reconnect. No Publish call waits
// longer than Config.PublishTimeout or past its context.
//
// Credentials travel in Config.URL (nats://user:password@host, nats://token@host). When the
// server refuses them at New, New returns an error wrapping ErrAuth (the outbox command
// exits 1 with it). When it starts refusing them later (credentials rotated on the server),
// the sink logs every refused reconnect at ERROR, keeps reconnecting (it does not give up
// after the second refusal as nats.go does by default) and publishes again as soon as the
// server accepts the credentials; meanwhile Publish fails with Unavailable errors. A server
// error that nats.go does not retry (a control line over the server's max_control_line, an
// unknown -ERR) closes the connection for good: the sink logs that at ERROR, and its
// publishes fail as Unavailable until the relay is restarted.
package nats
