// Package mysql is the MySQL and MariaDB outbox store: embedded migrations, claiming with
// FOR UPDATE SKIP LOCKED, per-key order checks, dead letters and relay membership, through
// database/sql and github.com/go-sql-driver/mysql. It needs MariaDB 10.6 or later, or MySQL
// 8.0.13 or later (SKIP LOCKED, expression defaults); MigrateUp refuses older servers.
//
// # Enqueueing
//
// Open the store, run MigrateUp once, and enqueue inside your business transactions with
// Writer, on the store's DB or on any *sql.DB of the same database:
//
//	tx, _ := db.BeginTx(ctx, nil)
//	// ... business writes ...
//	err := store.Writer().Enqueue(ctx, tx, outbox.Message{Topic: "orders.created", Key: orderID, Payload: body})
//	err = tx.Commit()
//
// Writers in other languages insert a row themselves (key is a reserved word: quote it);
// created_at and available_at default to the server's UTC clock:
//
//	INSERT INTO outbox (message_id, topic, `key`, type, payload, headers)
//	VALUES ('0191c3a0-6e1c-7cc2-9a4e-2f4f8e5f4a01', 'orders.created', 'order-42', 'order.created', ?, '{}')
//
// message_id must be a UUID in its 36-character text form (UUIDv7 keeps ids time-ordered),
// headers a JSON object. A row the relay cannot read is moved to the dead letters with the
// reason rather than blocking the claims behind it.
//
// # Claims
//
// Several relays may share one table. A claim is a READ COMMITTED transaction held open until
// Finish: it locks the ready rows of its share with SELECT ... FOR UPDATE SKIP LOCKED in id
// order, publishes them, and commits their deletion (or retry, or dead-lettering) at the end,
// so a relay killed mid-batch releases its rows to the others and nothing is lost.
//
// READ COMMITTED, not InnoDB's default REPEATABLE READ, for three reasons. REPEATABLE READ's
// locking reads take gap locks, which would stall every producer's INSERT behind an open
// claim for as long as its batch takes to publish. It also keeps the locks a scan took on rows
// that failed the WHERE (another relay's partition, a row in backoff), so the other relays
// would skip them. And under READ COMMITTED each statement reads the latest committed data:
// the order check sees what other claims have published or retried since this claim's scan,
// where a REPEATABLE READ snapshot would be fixed at the transaction's first read. (The order
// check happens to be that first read, so it would see the same rows; the locking behaviour is
// what decides.) Producers keep their own isolation level.
//
// Claims scan the primary key (InnoDB keeps the locks a SKIP LOCKED scan of a secondary index
// takes on rows failing the WHERE), and Finish reaches rows one by one through a derived table
// of ids joined on the primary key (a WHERE id IN (...) range locks the row past its end,
// which belongs to the next claim). With binary logging on, binlog_format must be ROW or MIXED:
// READ COMMITTED writes cannot be logged as statements.
//
// Each claim then verifies per-key order: for every key it took, the unpublished rows of that
// key up to the last one taken must all be in the claim. A key whose earlier row is held by
// another claim, is backing off, or belongs to a topic outside the request is dropped from the
// claim and reported by Blocked. AUTO_INCREMENT ids are taken at insert, not at commit: as in
// every dialect, transactions that overlap on one key are not ordered among themselves.
//
// Relays split the key space by CRC32 of the key's UTF-8 bytes (of the message_id for rows
// without a key): h mod Partitions == Partition, then (h div Partitions) mod Slots == Slot.
//
// MySQL has no LISTEN/NOTIFY: relays find new rows by polling (the poll source's interval).
//
// # Schema
//
// Text is utf8mb4 with the utf8mb4_bin collation and keys and topics compare byte for byte,
// as in Go (utf8mb4_bin alone would equate "a" and "a "). The key column is VARCHAR(1024), over
// InnoDB's 3072-byte index limit in utf8mb4, so its index holds a 191-character prefix and the
// full key is compared on the rows the index finds. topic and type are VARCHAR(255). Times are
// DATETIME(6) in UTC: the store uses UTC_TIMESTAMP(6) throughout, never NOW(), which follows
// each session's time_zone, and reads times as integers, so no connection setting (parseTime,
// loc, time_zone) changes them. Connections must use the utf8mb4 character set, the driver's
// default.
//
// # Migrations
//
// MigrateUp serialises concurrent migrations of one table with GET_LOCK. MySQL commits DDL
// implicitly, so a migration is not one transaction: each of its statements is idempotent
// (CREATE TABLE IF NOT EXISTS with indexes and checks inside, DROP TABLE IF EXISTS), so a
// migration interrupted before it was recorded in the <table>_migrations table is simply
// applied again. Statements are sent one at a time: the multiStatements option is not needed.
// A table qualified with a database ("shop.outbox") has its database created when missing.
//
// Migration 2 adds <table>_binlog, where the binlog relay source (relay/binlog) saves its
// position. The store's dialect.HeldWriter methods (DeleteHeld, DeadLetterHeld) serve that
// source, which reads rows from the binary log and holds messages in memory instead of
// claiming them.
package mysql
