// Package wal is the relay source that tails PostgreSQL's write-ahead log through logical
// replication (the built-in pgoutput plugin, via github.com/jackc/pglogrepl) instead of
// polling the outbox table. Messages reach the relay a millisecond or so after their
// transaction commits, with no polling queries at all.
//
//	src, err := wal.New(wal.Config{
//		ConnString: "postgres://relay@db/app?replication=database",
//		Pool:       pool,            // ordinary queries: deletes, dead letters, heartbeats
//		SlotName:   "outbox_orders",
//		Mode:       wal.ModeTable,   // or wal.ModeLogical
//	})
//	r, err := relay.New(relay.Config{Source: src, Sink: sk})
//	err = r.Run(ctx)
//
// The server needs wal_level = logical, the replication role the REPLICATION attribute, and
// the dead-letter table of the postgres store's migrations (outbox migrate up). On a server
// with another wal_level, Setup and Run fail at once with an error wrapping ErrWALLevel
// (Run does not retry it).
//
// # Two storage modes
//
// ModeTable reads the inserts into the outbox table through a publication
// (FOR TABLE <table> WITH (publish = 'insert'), created when missing). Producers use
// outbox.Enqueue (or a plain INSERT from any language: the table is the contract), and the
// source deletes the rows once their messages are acknowledged, in batches. With KeepAcked
// the source deletes nothing: for producers that delete their row in the same transaction as
// the insert (the insert still travels in the WAL), which keeps the table empty.
//
// ModeLogical stores nothing in any table: producers call outbox.EnqueueLogical (or
// outbox.LogicalWriter), which writes each message with pg_logical_emit_message(true, prefix,
// content) inside the business transaction, and the source decodes those messages
// (pgoutput's messages option). There are no rows to insert, delete, vacuum or index: the
// cheapest way to produce, and no bloat.
//
// Choose table mode when services in other languages write plain SQL, when you want to see
// the backlog with SELECT, or when you may switch back to the polling source (both read the
// same table). Choose logical mode for the highest write throughput and no table
// maintenance, when every producer can write the encoding (see below; it is a few lines in
// any language, or one SQL expression). Choose the polling source (relay/poll) instead of
// this package when wal_level cannot be logical, when several relays must share the work
// (a slot has one reader at a time), or when a retained-WAL alarm is not acceptable.
//
// # Order, acknowledgement and the slot's position
//
// The server sends transactions in commit order, each only after it committed (a rolled-back
// transaction is never sent). The source keeps one queue per key and hands a key's messages
// to one worker at a time, in order: a later message of a key is never given out while an
// earlier one is being published or waiting for its retry; different keys flow in parallel.
// A retried message stays in memory, goes back to the head of its key's queue with attempts+1
// and is given out again after its delay. A dead one is written to the dead-letter table
// (<table>_dead: original_id is the row id in table mode and the message's LSN in logical
// mode), then counts as done. In table mode a published message counts as done once its row
// is deleted. The source writes these outcomes through the postgres store of the same table
// (its dialect.HeldWriter).
//
// The slot's confirmed position advances past a transaction only when every one of its
// messages, and of every transaction before it, is done: the source confirms the end LSN of
// the newest transaction of that done prefix. When nothing is pending it also confirms the
// position the server reports in its keepalives (it asks for one at each status update),
// and it writes a non-transactional heartbeat message every HeartbeatInterval, so an idle
// outbox, or one in a quiet database of a busy cluster, never pins WAL. Status updates go out
// every StatusInterval and whenever the server asks.
//
// A restart (after a crash, a cut connection, or a stop) resumes from the confirmed
// position: nothing is lost, and the messages of transactions that were only partly
// published are published again. Consumers dedupe them by message id (outbox.Message.ID, the
// JetStream Nats-Msg-Id). A graceful stop first lets the batches in flight finish
// (ShutdownTimeout) and confirms them.
//
// # Memory
//
// Transactions of any size stream through: pgoutput protocol version 1 sends a transaction
// after its commit, message by message, and the source hands messages out as they arrive,
// before the transaction's end. It stops reading the stream while MaxInFlight messages (or
// MaxInFlightBytes of payload) are pending, and keeps sending status updates meanwhile so
// the server does not time the connection out; the server waits, with the transaction
// spilled to its own disk.
//
// # The slot
//
// The slot (SlotName) is created permanent when missing and reused across restarts; Setup
// creates it (and the publication) ahead of time; when the slot cannot be made, it drops the
// publication it created, leaving nothing behind. Create it before producers start writing:
// messages committed before the slot exists are not in its stream (in table mode such rows
// stay in the table, and the source warns when it finds some at creation).
//
// One connection reads a slot at a time. A second Source on the same slot is a hot standby:
// it retries every ReconnectInterval while the server reports the slot active, and takes
// over within that interval once the first relay's connection is gone (at once after a
// crash or stop; after wal_sender_timeout when the network partitioned it away).
//
// # Lag guard: what to do when the slot holds WAL back
//
// The server keeps all WAL after the slot's confirmed position. If the relay stops
// confirming (it is down, the sink refuses everything, a poison message is retried forever),
// WAL accumulates until the disk fills and the database stops. Lag reports the retained
// bytes; every LagCheckInterval the source compares them with MaxRetainedBytes and logs a
// warning above it. The operator then either
//   - fixes the cause: bring the relay or the broker back, read the relay's errors, look at
//     the dead letters; the backlog then drains and the retained WAL is released; or
//   - drops the slot when the relay is gone for good or the disk is about to fill:
//     SELECT pg_drop_replication_slot('<slot>'). The WAL is released at once. Messages not
//     yet published are lost to this source (in table mode their rows are still in the table,
//     and the polling source can publish them); the next Run creates a fresh slot.
//
// PostgreSQL's max_slot_wal_keep_size is the server-side safety net: past it the server
// invalidates the slot instead of filling the disk.
//
// # Table-less message encoding
//
// In logical mode each message is a transactional logical decoding message with the
// configured prefix (default "outbox"; heartbeats use prefix + "-heartbeat"), and content
// in this versioned binary format (big-endian integers; strings are UTF-8 preceded by a
// uint32 byte length):
//
//	version     1 byte, 0x01
//	message_id  16 bytes (UUID)
//	created_at  int64, microseconds since the Unix epoch (0: use the commit time)
//	topic       uint32 length + bytes (required)
//	key         uint32 length + bytes (empty: none)
//	type        uint32 length + bytes (empty: the topic)
//	headers     uint32 count, then count × (name, value), each uint32 length + bytes
//	payload     uint32 length + bytes; nothing may follow
//
// outbox.AppendLogical and outbox.ParseLogical implement it, and their documentation shows
// how to write it in plain SQL. A message with the prefix that does not decode goes to the
// dead-letter table with the reason (the raw content as payload) and does not stop the
// stream.
package wal
