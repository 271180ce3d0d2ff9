package chaos

import (
	"context"
	"fmt"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/inbox"
)

// database is the server the run's outbox lives in: PostgreSQL (postgresDB) or MariaDB
// (mariaDB). It owns the run's namespace (a schema, or a database of its own) and every query
// the checker runs itself: the producers' transactions, the relays' sessions it ends, and the
// reads of the verification. The checker's sessions go straight to the server; the relays
// reach it through the fault proxy.
type database interface {
	// setup connects, creates the run's namespace with the migrated outbox tables and the
	// business table, and whatever the source needs before anything is produced (a
	// replication slot, a saved binlog position).
	setup(ctx context.Context) error
	// addr is the server's host:port: the target of the relays' fault proxy.
	addr() (string, error)
	// table is the outbox table, qualified with the run's schema or database.
	table() string
	// relayEnv returns the settings of relay i: its OUTBOX_DATABASE_URL, reaching the server
	// at proxyAddr, and its source's settings.
	relayEnv(proxyAddr string) (func(i int) []string, error)
	// relaysUp reports whether the n relays are ready for the load (registered, or one of
	// them streaming), and what it saw, for the error when they never are.
	relaysUp(ctx context.Context, n int) (bool, string, error)
	// begin starts a producer's business transaction.
	begin(ctx context.Context) (producerTx, error)
	// terminateRelays ends the relays' sessions on the server and returns how many it ended.
	terminateRelays(ctx context.Context) (int, error)
	// committed returns the ledger indexes of the business rows: the committed messages.
	committed(ctx context.Context) ([]int64, error)
	// lookup finds messages, by message id, in the outbox and dead-letter tables.
	lookup(ctx context.Context, ids []string) (map[string]LostMessage, error)
	// stats reads the outbox table's figures.
	stats(ctx context.Context) (dialect.Stats, error)
	// hostileClasses are the hostile rows of this database (Config.Hostile).
	hostileClasses() []hostileClass
	// insertHostile writes one hostile row of class c with plain SQL, in a transaction of
	// its own.
	insertHostile(ctx context.Context, c *hostileClass, id, key string, payload []byte) error
	// deadLetters reads the whole dead-letter table.
	deadLetters(ctx context.Context) ([]deadLetter, error)
	// notes describe the database and the relays' source, for the report.
	notes(relayIDs string) []string
	// setupConsumers creates the consumers' tables in the run's namespace (the inbox's, by
	// its migrations; the effects; the per-key counters) and returns the inbox, on the
	// checker's connection, that verify reads the dead letters with.
	setupConsumers(ctx context.Context) (*inbox.Inbox, error)
	// consumerTables are the inbox, effects and counters tables, qualified.
	consumerTables() (inboxTable, effects, counters string)
	// consumerDB returns, for consumer process i, the dialect and the connection string
	// reaching the server at proxyAddr, as a session db-terminate ends.
	consumerDB(proxyAddr string) (func(i int) (dialect, url string), error)
	// effects reads the whole effects table.
	effects(ctx context.Context) ([]effectRow, error)
	// close drops what the run created (the namespace unless keep) and disconnects; it
	// returns notes for the report (what was kept, what could not be dropped).
	close(keep bool) []string
}

// orders are the business rows of one transaction, one per message: the ledger index, the
// message id, the key and its sequence number.
type orders struct {
	idx  []int64
	ids  []string
	keys []string
	seqs []int32
}

// producerTx is one business transaction.
type producerTx interface {
	// write inserts the business rows and enqueues their messages.
	write(ctx context.Context, o orders, msgs []outbox.Message) error
	commit(ctx context.Context) error
	// rollback ends the transaction; a transaction already ended is no error.
	rollback(ctx context.Context) error
}

// enqueuer writes messages in a transaction: *outbox.Writer (rows) or *outbox.LogicalWriter
// (table-less logical messages).
type enqueuer interface {
	Enqueue(ctx context.Context, tx outbox.Tx, msgs ...outbox.Message) error
}

// newDatabase returns the database of cfg.Database, not yet set up.
func newDatabase(cfg *Config, id string) database {
	if cfg.Database == DatabaseMariaDB {
		return &mariaDB{cfg: cfg, log: cfg.Logger, id: id}
	}
	return &postgresDB{cfg: cfg, log: cfg.Logger, id: id}
}

// checkID makes sure a run id, which names schemas, databases and users in SQL, is what
// randomID makes: lowercase hex.
func checkID(id string) error {
	if id == "" || len(id) > 16 {
		return fmt.Errorf("run id %q: want 1 to 16 hex digits", id)
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("run id %q: want lowercase hex digits", id)
		}
	}
	return nil
}

// waitRelays waits until the relays are ready for the load (see database.relaysUp).
func (r *run) waitRelays(ctx context.Context) error {
	for {
		ok, seen, err := r.db.relaysUp(ctx, r.cfg.Relays)
		if err == nil && ok {
			return nil
		}
		select {
		case <-ctx.Done():
			_, exits := r.relays.stats()
			return fmt.Errorf("waiting for the relays (%s, %v; exits %+v): %w", seen, err, exits, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// rowReader is what collectLost reads: pgx.Rows and *sql.Rows both are.
type rowReader interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// collectLost reads rows of message id, outbox id, attempts, error and a time — available_at
// in the outbox, failed_at in the dead letters (where "outbox" or "dead_letters") — into out.
func collectLost(rs rowReader, where string, out map[string]LostMessage) error {
	for rs.Next() {
		var (
			lm LostMessage
			id string
			at time.Time
		)
		if err := rs.Scan(&id, &lm.OutboxID, &lm.Attempts, &lm.LastError, &at); err != nil {
			return err
		}
		lm.Where = where
		if where == "outbox" {
			lm.AvailableAt = at.Format(time.RFC3339Nano)
		} else {
			lm.FailedAt = at.Format(time.RFC3339Nano)
		}
		out[id] = lm
	}
	return rs.Err()
}
