// Package binlog is the relay source that tails a MariaDB (or MySQL) binary log instead of
// polling the outbox table: it reads the row events of the inserts into the outbox table, as
// a replica would (through github.com/go-mysql-org/go-mysql's BinlogSyncer), and hands the
// messages to the relay a millisecond or so after their transaction commits, with no polling
// queries at all.
//
//	src, err := binlog.New(binlog.Config{
//		DSN:   "repl:secret@tcp(db:3306)/",  // the replication connection
//		DB:    db,                           // ordinary queries: deletes, dead letters, position, lock
//		Table: "shop.outbox",
//	})
//	r, err := relay.New(relay.Config{Source: src, Sink: sk})
//	err = r.Run(ctx)
//
// Producers are unchanged: they insert into the outbox table (outbox.Writer, or a plain
// INSERT from any language) inside their transactions, and the source deletes the rows once
// their messages are acknowledged, in batches. The tables are the mysql store's (dialect/mysql,
// `outbox migrate up`): the outbox table, its dead-letter table (<table>_dead) and the position
// table (<table>_binlog).
//
// # Server settings and privileges
//
// The server must write a binary log in row format with full row images, and have a server_id:
//
//	[mysqld]
//	server_id                  = 1
//	log_bin                    = mariadb-bin
//	binlog_format              = ROW
//	binlog_row_image           = FULL
//	binlog_row_metadata        = FULL      # recommended: row events carry column names
//	binlog_expire_logs_seconds = 604800    # longer than the source may ever be down
//
// The source checks log_bin, binlog_format and binlog_row_image when it connects and refuses to
// start otherwise. Producers must not switch their own session to statement-based logging (SET
// SESSION binlog_format): their inserts would not be row events. Binary log filters
// (binlog_do_db, binlog_ignore_db) must not leave out the outbox's database.
//
// The replication user (DSN) needs REPLICATION SLAVE and REPLICATION CLIENT (on MariaDB 10.5
// and later, REPLICATION SLAVE and BINLOG MONITOR). The user of DB needs SELECT and DELETE on
// the outbox table, INSERT on the dead-letter table, SELECT, INSERT and UPDATE on the position
// table, and REPLICATION CLIENT (BINLOG MONITOR) to read the server's position at the first
// start. Both may be the same user.
//
// # What is read
//
// The binary log carries every change of the server, in commit order, each transaction only
// once it committed: a rolled-back transaction is never there. The source keeps the inserts
// into the outbox table (WRITE_ROWS events of the table named in TABLE_MAP events) and ignores
// every other table, and the outbox table's updates and deletes (its own deletes among them).
// Rows of other tables are not even decoded. A transaction ends at its XID event (COMMIT for
// non-transactional engines); a statement on its own (DDL) is its own unit. XA transactions
// are not supported for producers: the server logs their rows at XA PREPARE, before it is
// known whether they commit. Compressed binary logs the source cannot read (MySQL's
// binlog_transaction_compression, MariaDB's version-2 compressed row events) stop it with an
// error rather than let it miss messages; MariaDB's log_bin_compress (version 1) is read.
//
// Columns are matched by name: from the table map when the server sends names
// (binlog_row_metadata=FULL), else from information_schema, read at the start and again when a
// statement names the table (ALTER TABLE). Without the names in the events, an ALTER TABLE of
// the outbox table while older events are still to be read can make them unreadable: keep
// binlog_row_metadata=FULL. Each row becomes a record the way the mysql store's claims read it:
// id is the record's Seq, a NULL key is no key, headers are a JSON object (values that are not
// strings kept as their JSON text), created_at and attempts as stored. A row that does not
// decode (a message_id that is not a UUID, headers that are not an object, a zero date,
// attempts outside 0..2^30, text that is not UTF-8) goes to the dead-letter table with a
// reason naming the column, and does not stop the stream.
//
// # Order, acknowledgement and the position
//
// The source keeps one queue per key and hands a key's messages to one worker at a time, in
// order: a later message of a key is never given out while an earlier one is being published
// or waiting for its retry; different keys flow in parallel. A retried message stays in memory,
// goes back to the head of its key's queue with attempts+1 and is given out again after its
// delay (the row's attempts column is not updated). A dead one is written to the dead-letter
// table from the record (its row deleted in the same transaction), then counts as done. A
// published message counts as done once its row is deleted (at once with KeepAcked). The
// source writes these outcomes through the mysql store of the same table (its
// dialect.HeldWriter).
//
// The position advances past a transaction only when every one of its messages, and of every
// transaction before it, is done. It is saved in the position table (row Name) every
// PositionInterval when messages were done. Other traffic (other tables, other databases)
// moves it too, and it is then saved every HeartbeatInterval, so that a quiet outbox in a busy
// server is never far behind and never waits on binary logs about to expire; the source's own
// position writes do not count, so an idle server sees no writes. The saved position therefore
// trails the server's by that last write.
//
// A restart (after a crash, a cut connection, or a stop) resumes from the saved position:
// nothing is lost, and the messages of transactions that were only partly published are
// published again (their rows may be gone already: they are published from the binary log).
// Consumers dedupe them by message id (outbox.Message.ID, the JetStream Nats-Msg-Id). For the
// same reason a dead letter can be written twice after a crash. A graceful stop first lets the
// batches in flight finish (ShutdownTimeout) and saves their position.
//
// # GTID or file and position
//
// The position is saved both ways: the GTID position and the binary log coordinates
// (file:pos). On MariaDB the source resumes by GTID (the last GTID of each replication domain,
// @slave_connect_state), which survives the rotation and purging of binary log files and,
// with GTIDs replicated, a switch to a replica. When the server had logged no GTID yet at the
// source's first start (a new server), the source starts from the coordinates and tracks GTIDs
// from the first one on. On MySQL the source resumes by GTID set when gtid_mode was ON at its
// first start, else by coordinates. The source is developed and tested against MariaDB 10.11;
// MySQL 8 support follows the same code paths but is not tested here.
//
// ServerPosition reads the server's current position and ReadPosition a source's saved one:
// their difference is the source's lag (`outbox status`).
//
// # The first start
//
// A source with no saved position starts from the server's current position, and saves it
// before streaming. Setup does the same ahead of time: call it (or start the relay) before
// producers start writing. Messages committed before the starting position are not in the
// source's stream; their rows stay in the table, and the source warns when it finds some at
// its first start: publish them with the polling relay (relay/poll), which reads the same
// table, or re-insert them.
//
// # Memory
//
// Transactions of any size stream through: rows are handed out as they are read, before the
// transaction's end. The source stops reading while MaxInFlight messages (or MaxInFlightBytes
// of payload) are pending, so a transaction of 100,000 messages needs no more memory than
// MaxInFlight of them, plus the few events go-mysql decodes ahead (128). While it does not
// read, the server's sending thread waits; if that lasts longer than the server's
// net_write_timeout (60s by default) the server closes the connection, and the source
// reconnects from its saved position once it has room again.
//
// # Hot standby
//
// Sources with the same Name on the same table are one relay: each session first takes a
// named lock, GET_LOCK('outbox_binlog_<hash of database, table, Name>', 0), on a connection of
// DB it keeps for the session. The source that holds it streams; the others stand by and try
// again every ReconnectInterval. When the active source dies, its connection closes and the
// server releases the lock: a standby takes over within ReconnectInterval (after a network
// partition, once the server notices the connection is gone: wait_timeout or TCP keepalive).
// The position is saved on the lock's connection, so a source that lost its lock cannot save
// over its successor's position, and the source checks that connection every PositionInterval
// and stops streaming when it fails.
//
// Each source registers with the server as a replica with ServerID, by default a value
// derived from the database, the table and Name: sources of one relay share it (a standby that
// takes over replaces a dump left behind by its predecessor), sources of different outboxes
// differ.
//
// # Reconnects and silence
//
// A failed binary log connection, a failed lock connection, or a server that sent nothing for
// 10s (it is asked for a heartbeat every second) ends the session: the source forgets what it
// read and not yet finished, and reconnects after ReconnectInterval from the saved position.
// Batches in flight from the ended session are released when they finish; their keys stay
// blocked until then, so per-key order holds across reconnects.
//
// # Lag
//
// Source.Lag measures how far the reading is behind the server: the bytes from the read
// position to the server's current one (SHOW MASTER STATUS; across rotated files, their sizes
// from SHOW BINARY LOGS), and the seconds since the last transaction event read while the
// server has more. It costs queries: call it at an interval (the outbox command does, every
// admin.stats_interval, for the outbox_binlog_lag_seconds and outbox_binlog_lag_bytes gauges).
//
// # When the saved position is gone
//
// The server keeps binary logs for binlog_expire_logs_seconds. A source down for longer, or a
// position copied from another server, cannot stream: the server refuses (error 1236), and the
// source logs an error at each attempt. To start again from the server's current position,
// delete the source's row: DELETE FROM <table>_binlog WHERE name = '<name>'. Messages committed
// in between are not published by this source; their rows are still in the outbox table
// (unless KeepAcked): publish them with the polling relay.
package binlog
