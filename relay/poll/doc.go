// Package poll is the polling source of the relay: workers claim batches of committed
// messages from the outbox table, in id order, and hold them (row locks in PostgreSQL, the
// store's claim registry in SQLite) until the relay finishes them.
//
// Nothing is skipped: there is no "last seen id" cursor, so a transaction that took its ids
// early and committed late is simply found by the next claim. Published rows are deleted (or,
// with Retention, marked and deleted later), which keeps the scan short.
//
// Scale-out: each relay heartbeats into the membership table; with n live relays, relay i
// claims only keys with h mod n = i (h a hash of the key), and its worker j of w only those
// with (h / n) mod w = j, so relays and workers share the work without contending for the
// same keys, whatever each relay's worker count. When relays come and go the split changes;
// the store's per-key order check keeps order while it does. Relays with a topic filter form
// their own group and split the keys only among themselves.
//
// Blocked keys: when a key's head message is backing off (or held by another relay), the
// claim learns it and later claims skip that key until the message is due, so one stuck key
// never fills the batches of its partition.
//
// The poll interval is only the wait after finding nothing: a worker that found messages
// claims again at once.
package poll
