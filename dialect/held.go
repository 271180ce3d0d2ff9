package dialect

import (
	"context"

	"github.com/outboxgo/outbox"
)

// HeldWriter writes the outcomes of messages a log source holds. The log sources (relay/wal,
// relay/binlog) do not claim rows: they read inserted rows (or logical messages) from the
// database's log, keep retries in memory, and change the tables only once a message is done:
// its row deleted, or its dead letter written, and broker duplicates counted. Both go through
// this interface, implemented by the stores of the databases they read (postgres, mysql).
//
// A write that fails changes nothing or may simply be made again: deletes are idempotent and a
// batch of dead letters is one statement or one transaction.
type HeldWriter interface {
	// DeleteHeld deletes the rows of acknowledged messages and adds duplicates (messages
	// their broker acknowledged as duplicates, outbox.Outcome.Duplicates) to
	// Stats.BrokerDuplicates, in one transaction. A row already gone (deleted before, or by
	// its producer) is no error. It returns the rows to delete again later: rows it could not
	// see yet because their inserting transaction (HeldRow.Txn) was not visible to it. Stores
	// whose delete waits for the inserting transaction return none.
	DeleteHeld(ctx context.Context, rows []HeldRow, duplicates int64) (later []HeldRow, err error)

	// DeadLetterHeld inserts messages into the dead-letter table from their records: not from
	// the outbox table, which may no longer hold them, and whose attempts column a holder does
	// not update. As with the dead letters of a claim, original_id is the record's Seq and
	// attempts counts the last, failed, attempt (Record.Attempts + 1); text the table cannot
	// hold is made storable. With deleteRows their outbox rows go too: deleted in the same
	// transaction, or returned as later, for the caller to delete with DeleteHeld, by a store
	// that must tell rows not visible yet from rows gone (see DeleteHeld). A record without a
	// row (Seq <= 0: an unreadable row whose id is unknown) has nothing to delete.
	DeadLetterHeld(ctx context.Context, dead []HeldDead, deleteRows bool) (later []HeldRow, err error)
}

// HeldRow is the outbox row of a message a log source holds.
type HeldRow struct {
	// Seq is the row's id (outbox.Record.Seq).
	Seq int64
	// Txn is the id of the transaction that inserted the row, as the database's log names it
	// (PostgreSQL: the xid of the transaction's Begin message), or 0 when unknown. A store whose
	// log can show a transaction before other sessions see it uses Txn to tell a row not
	// visible yet from a row already deleted.
	Txn uint32
}

// HeldDead is a message to dead-letter as its holder has it.
type HeldDead struct {
	// Record is the message as held: its Attempts are the failed attempts before the last one.
	Record outbox.Record
	// Error is the reason: the last error.
	Error string
	// Txn is the inserting transaction of the record's row, as in HeldRow.
	Txn uint32
}

// Row returns the outbox row of d.
func (d HeldDead) Row() HeldRow { return HeldRow{Seq: d.Record.Seq, Txn: d.Txn} }
