// Package inbox makes a consumer apply each message once: the inbox pattern, the receiving
// half of the transactional outbox. Brokers deliver at least once; the inbox records each
// message's id in the consumer's own database, in the same transaction as the message's
// effects, so a redelivery finds the id and is skipped.
//
// # Processing
//
// An adapter (a broker's consumer: see the natsinbox, kafkainbox, amqpinbox, redisinbox,
// mqttinbox and webhookinbox modules) decodes each delivery into a Message and runs
//
//	o, err := in.Deliver(ctx, inbox.Delivery{Message: msg, Redelivered: redelivered}, handler)
//	switch {
//	case err != nil:  // the inbox's database failed: redeliver after a pause, count nothing
//	case o.Retry:     // the handler failed (rolled back, recorded): redeliver after o.Delay
//	default:          // Applied, Duplicate, Stale or DeadLettered: ack, after the commit
//	}
//
// Deliver opens the transaction on Config.Pool or Config.DB and commits it; DeliverBatch does
// the same for many messages in one transaction. With a transaction of your own (effects in
// another database handle), run the steps yourself:
//
//	attempt, err := in.Attempt(ctx, msg)   // own short transaction: counts the delivery
//	if errors.Is(err, inbox.ErrDeadLettered) { ack; continue }
//	tx := begin()
//	res, err := in.Process(ctx, tx, msg, handler) // records the id, runs handler(ctx, tx, msg)
//	if err != nil { rollback; in.Failed(ctx, msg, err); nack; continue }
//	commit; ack                             // ack only after the commit
//
// Attempt counts the delivery before the handler runs, so a handler that crashes the process
// is counted too; after MaxAttempts deliveries the message is moved to the dead letters
// (<table>_dead) with the last error Failed recorded, and its id is recorded as processed.
// Deliver calls Attempt only for deliveries the broker marks as redelivered (a first delivery
// is counted when it fails), so the common case costs one statement, the insert of the id
// (on PostgreSQL it also clears the attempt count of a redelivery). With a pgx pool, Deliver
// sends that statement in the same round trip as the transaction's BEGIN (pgx's
// Batch.BeginTx), so the inbox adds no round trip to the consumer's transaction.
// DeadLetters lists the dead letters, RetryDeadLetters marks them for one more try, which
// Redrive (run by the adapters every few seconds) applies with the consumer's handler, and
// PurgeDeadLetters deletes them.
//
// Handlers may write business rows and enqueue outbox messages (outbox.Enqueue) in tx: the
// effects, the processed id and the next events commit together.
//
// Two copies of one message processed at the same moment, in two transactions at READ
// COMMITTED (PostgreSQL, MariaDB), give one effect: the second insert of the id waits for the
// first transaction, then finds the id taken (Duplicate). MariaDB's INSERT IGNORE does the
// same: it waits for the conflicting uncommitted row, then ignores it.
//
// # What the inbox can and cannot tell
//
// Ids are kept for Retention (default 7 days), then deleted by DeleteExpired (RunRetention
// runs it on a timer). Retention must exceed the broker's redelivery horizon: a copy
// redelivered within Retention of the first delivery is always a Duplicate.
//
// A copy redelivered later, after its id was deleted, is caught only by its key's position
// (Message.Position, the sender's outbox row id or WAL LSN): when DeleteExpired deletes ids,
// it keeps, in the same transaction, the greatest position of each of their keys
// (<table>_keys, for KeyRetention, default 90 days, after the key's last expired id). So a
// message costs one row, and a late copy finds either its id or a position at least its own.
// A message with an unknown id whose Position is at most its key's kept position is reported
// Stale, and not applied, only when its id could have aged out: when Message.Time is zero or
// older than Retention less ClockSkewMargin (the margin lets the sender's clock run that much
// ahead of the consumer's). A message with an unknown id, a lower position and a recent Time
// is a first delivery out of order (a broker redelivered an earlier message after a later
// one): it is applied. So is an old message never applied before whose key's later messages
// are still within the window: only positions of expired ids are kept, and those later
// messages' ids catch their own copies.
//
// So the inbox cannot catch:
//   - a late duplicate of a message without a key or position (Key "" or Position 0), once
//     its id is gone: make Retention longer than any redelivery;
//   - a late duplicate whose key was idle for longer than KeyRetention;
//   - a duplicate re-sent with a new id (a producer that enqueues twice);
//   - through Process in a transaction of yours at REPEATABLE READ or SERIALIZABLE, a late
//     copy processed in the instant DeleteExpired deletes its id and first keeps a position
//     for its key: the key's row is read in the transaction's snapshot, which predates it.
//     At READ COMMITTED (Deliver's transactions) the read follows the id's insert, which
//     waited for that deletion, and sees the position.
//
// A message retried from the relay's dead letters is enqueued again with a new row id, so a
// new, greater position: it is applied as any new message. A message retried from the
// inbox's own dead letters keeps its position, lower than those of the later messages of its
// key that were applied meanwhile: Redrive applies it without the position check (and the
// key's kept position is never lowered).
//
// # Tables
//
// MigrateUp creates <table> (processed ids), <table>_keys, <table>_attempts, <table>_dead
// and <table>_migrations (default table "inbox"). Times are stored as Unix microseconds
// (BIGINT) in every dialect, taken from the consumer's clock. The inbox's own statements
// (attempt counts, dead letters, retention, migrations) use Config.Pool or Config.DB; the
// handler's effects use only the transaction given to Process.
package inbox
