// Package poll is the polling source of the relay: workers claim batches of committed
// messages from the outbox table, in id order, and hold them (row locks in PostgreSQL, the
// write lock in SQLite) until the relay finishes them.
//
// Nothing is skipped: there is no "last seen id" cursor, so a transaction that took its ids
// early and committed late is simply found by the next claim. Published rows are deleted (or,
// with Retention, marked and deleted later), which keeps the scan short.
//
// Scale-out: each relay heartbeats into the membership table; with n live relays of w workers
// each, worker j of relay i claims only keys with hash(key) mod (n·w) = i·w + j, so relays
// and workers share the work without contending for the same keys. When relays come and go
// the split changes; the store's per-key order check keeps order while it does.
//
// The poll interval is only the wait after finding nothing: a worker that found messages
// claims again at once.
package poll
