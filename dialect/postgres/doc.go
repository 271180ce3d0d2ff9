// Package postgres is the PostgreSQL outbox store: embedded migrations, claiming with
// FOR UPDATE SKIP LOCKED, per-key order checks, dead letters and relay membership.
//
// Several relays may share one table. Each claims in its own transaction, which holds the row
// locks while the batch is published and commits the deletes (or retries) at the end, so a
// relay killed mid-batch releases its rows to the others and nothing is lost. Relays split
// the key space by hash(key) mod (live relays × workers); a claim additionally verifies that
// every claimed row of a key is preceded by no unclaimed unpublished row of that key, so order
// holds even while relays join and leave.
package postgres
