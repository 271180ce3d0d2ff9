// Package outbox is a transactional outbox for Go: it makes "commit to the database" and
// "publish an event" one atomic step.
//
// A service that writes its data and then publishes to a broker loses events when it crashes
// in between, and invents them when the publish succeeds but the transaction rolls back. With
// an outbox the event is inserted into an outbox table in the same transaction as the
// business data; a relay (package relay, or the outbox command) publishes committed messages
// afterwards, retrying with persisted backoff, and deletes them once the broker acknowledged
// them. Delivery is at least once, never lost, in commit order per key.
//
// # Producing
//
// Call Enqueue inside your transaction, with a pgx.Tx or a *sql.Tx:
//
//	tx, _ := pool.Begin(ctx)
//	tx.Exec(ctx, `INSERT INTO orders ...`)
//	outbox.Enqueue(ctx, tx, outbox.Message{Topic: "orders.created", Key: orderID, Payload: body})
//	tx.Commit(ctx)
//
// Enqueue writes to the table "outbox" in PostgreSQL; NewWriter configures another table
// (schema-qualified names allowed) or the SQLite dialect. Any number of messages go in one
// round trip. Messages are validated first (non-empty topic, payload size, header names), and
// an invalid one fails the call with a *ValidationError wrapping ErrInvalidMessage.
//
// # Keys and order
//
// Messages with the same Key reach the broker in the order their transactions committed (and
// in Enqueue order within one transaction). Use the aggregate's id as the key. Messages with
// different keys, or none, flow in parallel.
//
// # Identity and duplicates
//
// Each message has a stable ID (UUIDv7) that travels to the broker (CloudEvents "id", the
// JetStream Nats-Msg-Id). After a crash a message may be published twice; consumers dedupe
// on the ID.
//
// # Other languages
//
// The outbox table is a plain contract: any service can INSERT into it (see the README), and
// the relay publishes those rows too.
package outbox
