// Package nats is the NATS JetStream sink: it publishes outbox messages to JetStream
// subjects and reports a message as delivered only once JetStream acknowledged storing it.
//
// # Subjects and streams
//
// A message goes to the subject Config.SubjectPrefix + topic. Some stream must capture that
// subject: create it yourself, or set Config.Stream and the sink creates (or updates) it
// before publishing. A message whose subject no stream captures fails with a retryable
// error that says so, so that nothing is lost while an operator creates the stream. A topic
// that is not a valid NATS subject (whitespace, a * or > token, an empty token) fails
// permanently and goes to the dead-letter table.
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
// a success: JetStream already holds the message (it drops a message whose Nats-Msg-Id it
// saw within the stream's duplicate window, two minutes by default, which turns the relay's
// retries after a crash into no-ops).
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
// # Outages
//
// A connection the sink makes reconnects forever, also when NATS is down when New is
// called. While it is down, Publish fails at once with retryable errors instead of
// buffering, and publishing resumes by itself after the reconnect. No Publish call waits
// longer than Config.PublishTimeout or past its context.
package nats
