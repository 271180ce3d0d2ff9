// Package stdout is a sink that writes messages as JSON lines, one per message, to standard
// output or any io.Writer: for development, demos (`outbox quickstart`), and piping the
// relay into other tools such as jq.
//
// Each line is an object with the fields id, topic, key, type, seq, created_at, headers
// (omitted when empty), and the payload: under "payload" as JSON when the payload is valid
// JSON, else under "payload_base64". seq is the message's position in its key's order, what
// the other sinks send as the CloudEvents extension outboxseq (outbox.Record.Seq: the outbox
// row id, or the commit LSN in WAL logical mode); it is omitted when Seq <= 0.
//
//	{"id":"0195a1b2-...","topic":"orders","key":"order-1","type":"order.created","seq":1,"created_at":"2025-03-14T15:09:26Z","payload":{"total":12}}
//
// The sink acknowledges a message once its line has been written; a failed write is a
// retryable error.
package stdout
