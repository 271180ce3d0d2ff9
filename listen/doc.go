// Package listen implements "listen to yourself" with read-your-writes: a service writes
// only an event (outbox.Enqueue, in its transaction) and updates its own state when it
// consumes that event through its inbox, while a cache filled at commit lets a read right
// after the write see it.
//
// # The pattern
//
//   - Write (or WriteLocked) reads the key's current state, the newer of the cache's and
//     the table's, lets the caller decide the event and the next state, stamps the next
//     version (current + 1) into the event's VersionHeader and enqueues the event in the
//     caller's transaction. After the commit, Pending.Committed puts the next state in
//     the cache. The service's table is not touched.
//   - The relay publishes the event; the service's own inbox adapter consumes it with
//     Handler, which calls the caller's Apply in the inbox's transaction: a write of the
//     state row guarded by version (ExecApply: an upsert WHERE version < the event's), so
//     a duplicate or an older event delivered late never moves the table back. The inbox
//     records the event's id with it.
//   - Read serves the cache, and falls back to the table (Config.Load), caching what it
//     read. The cache's Put is a compare-and-set on the version: no write, late apply or
//     fallback read ever replaces a newer cached state.
//   - The write returns a Token (its event ids) the client sends back on its next request:
//     ReadAfter on any replica waits, bounded (WaitApplied), until the self-consumer has
//     processed those events, then reads the table.
//
// # What read-your-writes covers
//
// On the writer's replica, a read after the write sees it at once (its cache), before the
// self-consumer ran, even while the consumer is stopped. With a cache shared by the
// replicas (redislisten), every replica sees it at once. With in-process caches
// (MemoryCache), another replica sees it only once it is applied: with the write's token,
// ReadAfter waits for that; a plain Read there serves what its cache holds, which may be an
// older state of the key until the entry expires.
//
// It does not cover: a read without the token on a replica that does not share the
// writer's cache; a write whose Committed was not called (process crashed after the
// commit, or the cache was down: Committed's error) until its event is applied; a cache
// entry evicted or expired before the event is applied (the read then shows the table's
// older state); readers of the table itself, which lag by the relay and consumer delays;
// and events dead-lettered by the inbox, which WaitApplied counts as processed though their
// state was not applied.
//
// # Concurrent writes of a key
//
// Write decides on the state it read. Two writes of one key at once (two requests, two
// replicas) can read the same state and decide the same version: the self-consumer applies
// the first it consumes and skips the other, logging it (a lost update). Where that
// matters, serialize the writes of a key: WriteLocked holds a PostgreSQL advisory lock of
// the key from before the read until after the cache is filled, so with a cache shared by
// the replicas the next writer reads the version the previous one decided. Without a
// shared cache, route each key to one replica (its owner). Either way the cache's TTL must
// exceed the self-consumer's lag: an entry that expires before its event is applied leaves
// the next writer the table's older state.
//
// Config.LoadTx reads the table inside the write's transaction; WriteLocked requires it,
// so that a lock holder never waits for a second connection of a pool its waiters hold.
//
// # The events
//
// By default an event carries the whole next state as its payload (Config.StateOf), and
// Write checks that the state decide returned is the one the self-consumer will derive
// (ErrStateMismatch), so the cache never serves a state the table will not hold. The
// self-consumer should consume only the service's own events: one without a version is
// retried and in the end dead-lettered by the inbox (ErrNoVersion).
package listen
