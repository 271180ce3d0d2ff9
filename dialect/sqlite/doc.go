// Package sqlite is the SQLite outbox store, the embedded default: a single database file, no
// server, through the pure-Go driver modernc.org/sqlite (driver name "sqlite", no cgo).
//
// # Enqueueing
//
// Open the store, run MigrateUp once, and enqueue inside your business transactions with
// Writer, on the store's DB or on any *sql.DB opened on the same file:
//
//	tx, _ := store.DB().BeginTx(ctx, nil)
//	// ... business writes ...
//	err := store.Writer().Enqueue(ctx, tx, outbox.Message{Topic: "orders.created", Key: orderID, Payload: body})
//	err = tx.Commit()
//
// Writers in other languages insert a row themselves; times are unix microseconds:
//
//	INSERT INTO outbox (message_id, topic, key, type, payload, headers, created_at, available_at)
//	VALUES (?, ?, ?, ?, ?, '{}', ?, ?)
//
// (created_at and available_at default to SQLite's clock, in whole milliseconds.)
//
// # Concurrency
//
// SQLite has one writer at a time. The store opens the file in WAL mode, so readers never
// wait for the writer, with a busy timeout of BusyTimeout, so a writer queues for the lock
// instead of failing, and with _txlock=immediate, so a write transaction takes the lock at
// BEGIN and never fails halfway through. A DB you pass in should be opened the same way
// (see DSN and DSNParams).
//
// The wait for the lock is not a queue: SQLite's busy handler sleeps and tries again, in steps
// of up to 100 ms, so among many writers one can wait far longer than their transactions
// take, and under heavy contention (several writers on one file, a loaded machine) wait out
// BusyTimeout and fail at BEGIN with SQLITE_BUSY. A process that writes a lot does better
// with one connection to the file (db.SetMaxOpenConns(1), reading inside its write
// transactions): its writers then wait in order in database/sql's pool instead of in
// SQLite's retries (examples/shop: listing visibility p99 80–125 ms → 35–60 ms on a loaded
// machine).
//
// A claim does not keep a transaction open while its batch is published: that would stop
// every producer for as long as the broker takes. Instead the Store keeps its open claims in
// memory. A claim takes ready messages in id order, skipping messages held by other claims
// and every later message of their keys, and every message of a key whose earlier message is
// in backoff; those keys are reported by Blocked. Finish applies the outcome in one short
// write transaction and only then releases the messages. Nothing is written at claim time,
// so a relay that dies mid-batch loses nothing: its messages are claimed again on restart.
// Because claims live in the Store, run a single relaying Store per database file (one relay
// process, with as many workers as you like); producers in any number of processes are fine.
//
// # Commit notifications
//
// The Store implements dialect.Notifier, so a relay (relay/poll) wakes at commit instead of
// at its next poll. A Store opened with Path installs SQLite's pre-update and commit hooks on
// its connections: a transaction that inserts into the outbox table through them (the
// Writer on DB, plain SQL, RetryDeadLetters) signals Listen as it commits, and Listen reads
// PRAGMA data_version on a connection of its own at once, then every few hundred
// microseconds until the commit shows there, and wakes the relay. Commits made elsewhere (another process, the sqlite3 shell, a DB given in
// Config.DB) change data_version too, and Listen reads it every Config.WatchInterval (10 ms
// by default).
//
// Ids come from AUTOINCREMENT and writers are serialised, so id order is commit order and
// ids are never reused. Partitions split the key space by FNV-1a of the key (or of the
// message_id for messages without a key).
package sqlite
