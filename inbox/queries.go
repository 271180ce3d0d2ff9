package inbox

import (
	"strconv"
	"strings"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/sqlident"
)

// queries are the statements of one dialect and table, built once by New.
type queries struct {
	isProcessed       string
	insertProcessed   string
	processPGClear    string // PostgreSQL: insertProcessed that also clears the attempt count
	processBatchPG    string // PostgreSQL: processPGClear for a batch
	attemptPG         string // PostgreSQL: Attempt's count, unless the id is processed, in one statement
	keyPosition       string // the position folded from a key's expired ids, share-locked
	keyPositionsPG    string // PostgreSQL: keyPosition for an array of keys
	foldKeysHead      string // MySQL, SQLite: a multi-row upsert of folded positions, to which
	foldKeysTail      string // the VALUES tuples (?, ?, ?, ?) are appended
	takeExpired       string // MySQL, SQLite: a batch of expired ids with their keys and positions
	deleteIDs         string // MySQL: the ids takeExpired locked, to which "?, ?)" is appended
	deleteAttempts    string
	upsertAttempt     string
	readAttempt       string
	uncountAttempt    string
	failed            string
	insertDead        string
	listDead          string
	getDead           string
	markRetried       string
	nextRetried       string
	unmarkRetried     string
	touchProcessed    string
	purgeDead         string
	expireProcessedPG string // PostgreSQL: a batch of expired ids deleted, their positions folded
	expireKeys        string
	expireAttempts    string
}

const deadColumns = "message_id, topic, type, source, %k, msg_time, headers, payload, position, attempts, last_error, dead_at"

func buildQueries(d outbox.Dialect, t sqlident.Table) queries {
	quote := sqlident.Table.Quoted
	key := "key"
	forShare, skipLocked := " FOR SHARE", " FOR UPDATE SKIP LOCKED"
	switch d {
	case outbox.MySQL:
		quote = sqlident.Table.QuotedMySQL
		key = "`key`"
		forShare = " LOCK IN SHARE MODE" // MariaDB's spelling, which MySQL 8 also takes
	case outbox.SQLite:
		forShare, skipLocked = "", "" // one writer at a time: nothing to lock
	}
	p := quote(t)
	k := quote(t.Derived("_keys"))
	a := quote(t.Derived("_attempts"))
	dead := quote(t.Derived("_dead"))
	cols := strings.ReplaceAll(deadColumns, "%k", key)
	q := queries{
		isProcessed:    `SELECT count(*) FROM ` + p + ` WHERE consumer = ? AND message_id = ?`,
		keyPosition:    `SELECT position FROM ` + k + ` WHERE consumer = ? AND ` + key + ` = ?` + forShare,
		deleteAttempts: `DELETE FROM ` + a + ` WHERE consumer = ? AND message_id = ?`,
		readAttempt:    `SELECT attempts, last_error FROM ` + a + ` WHERE consumer = ? AND message_id = ?`,
		uncountAttempt: `UPDATE ` + a + ` SET attempts = attempts - 1 WHERE consumer = ? AND message_id = ? AND attempts > 0`,
		listDead:       `SELECT id, ` + cols + ` FROM ` + dead + ` WHERE consumer = ? AND id > ? AND retried_at IS NULL ORDER BY id LIMIT ?`,
		getDead:        `SELECT id, ` + cols + ` FROM ` + dead + ` WHERE consumer = ? AND id = ? AND retried_at IS NULL`,
		markRetried:    `UPDATE ` + dead + ` SET retried_at = ? WHERE id = ?`,
		nextRetried:    `SELECT id, ` + cols + ` FROM ` + dead + ` WHERE consumer = ? AND retried_at IS NOT NULL ORDER BY id LIMIT 1` + skipLocked,
		unmarkRetried:  `UPDATE ` + dead + ` SET retried_at = NULL, last_error = ?, dead_at = ?, attempts = attempts + 1 WHERE consumer = ? AND id = ?`,
		purgeDead:      `DELETE FROM ` + dead + ` WHERE consumer = ? AND id = ?`,
	}
	deadValues := ` (consumer, ` + cols + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	switch d {
	case outbox.MySQL:
		q.insertProcessed = `INSERT IGNORE INTO ` + p + ` (consumer, message_id, ` + key + `, position, processed_at) VALUES (?, ?, ?, ?, ?)`
		q.foldKeysHead = `INSERT INTO ` + k + ` (consumer, ` + key + `, position, updated_at) VALUES `
		q.foldKeysTail = ` ON DUPLICATE KEY UPDATE position = GREATEST(position, VALUES(position)), updated_at = VALUES(updated_at)`
		q.upsertAttempt = `INSERT INTO ` + a + ` (consumer, message_id, attempts, last_error, updated_at) VALUES (?, ?, 1, '', ?)` +
			` ON DUPLICATE KEY UPDATE attempts = attempts + 1, updated_at = VALUES(updated_at)`
		q.failed = `INSERT INTO ` + a + ` (consumer, message_id, attempts, last_error, updated_at) VALUES (?, ?, 1, ?, ?)` +
			` ON DUPLICATE KEY UPDATE last_error = VALUES(last_error), updated_at = VALUES(updated_at)`
		q.insertDead = `INSERT INTO ` + dead + deadValues +
			` ON DUPLICATE KEY UPDATE attempts = VALUES(attempts), last_error = VALUES(last_error), dead_at = VALUES(dead_at), retried_at = NULL`
		q.takeExpired = `SELECT message_id, ` + key + `, position FROM ` + p + ` WHERE consumer = ? AND processed_at < ? ORDER BY processed_at LIMIT ? FOR UPDATE`
		q.deleteIDs = `DELETE FROM ` + p + ` WHERE consumer = ? AND message_id IN (`
		q.expireKeys = `DELETE FROM ` + k + ` WHERE consumer = ? AND updated_at < ? LIMIT ?`
		q.expireAttempts = `DELETE FROM ` + a + ` WHERE consumer = ? AND updated_at < ? LIMIT ?`
		q.touchProcessed = `INSERT INTO ` + p + ` (consumer, message_id, ` + key + `, position, processed_at) VALUES (?, ?, ?, ?, ?)` +
			` ON DUPLICATE KEY UPDATE processed_at = VALUES(processed_at)`
	default:
		// PostgreSQL and SQLite share the upsert syntax; SQLite reads unqualified columns
		// of DO UPDATE as the existing row's, PostgreSQL needs the alias.
		alias, ref := " AS t", "t."
		if d == outbox.SQLite {
			alias, ref = "", ""
		}
		q.insertProcessed = `INSERT INTO ` + p + ` (consumer, message_id, key, position, processed_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
		if d == outbox.SQLite {
			q.foldKeysHead = `INSERT INTO ` + k + ` (consumer, key, position, updated_at) VALUES `
			q.foldKeysTail = ` ON CONFLICT (consumer, key) DO UPDATE SET position = max(position, excluded.position), updated_at = excluded.updated_at`
		}
		q.upsertAttempt = `INSERT INTO ` + a + alias + ` (consumer, message_id, attempts, last_error, updated_at) VALUES (?, ?, 1, '', ?)` +
			` ON CONFLICT (consumer, message_id) DO UPDATE SET attempts = ` + ref + `attempts + 1, updated_at = excluded.updated_at`
		q.failed = `INSERT INTO ` + a + ` (consumer, message_id, attempts, last_error, updated_at) VALUES (?, ?, 1, ?, ?)` +
			` ON CONFLICT (consumer, message_id) DO UPDATE SET last_error = excluded.last_error, updated_at = excluded.updated_at`
		q.insertDead = `INSERT INTO ` + dead + deadValues +
			` ON CONFLICT (consumer, message_id) DO UPDATE SET attempts = excluded.attempts, last_error = excluded.last_error, dead_at = excluded.dead_at, retried_at = NULL`
		// One bounded statement per batch: a subquery picks the batch (PostgreSQL has no
		// DELETE ... LIMIT, and SQLite's is a compile-time option).
		batch := func(table, cond string) string {
			id := "ctid"
			if d == outbox.SQLite {
				id = "rowid"
			}
			return `DELETE FROM ` + table + ` WHERE ` + id + ` IN (SELECT ` + id + ` FROM ` + table + ` WHERE consumer = ? AND ` + cond + ` < ? LIMIT ?)`
		}
		if d == outbox.SQLite {
			q.takeExpired = batch(p, "processed_at") + ` RETURNING message_id, key, position`
		}
		q.expireKeys = batch(k, "updated_at")
		q.expireAttempts = batch(a, "updated_at")
		q.touchProcessed = `INSERT INTO ` + p + ` (consumer, message_id, key, position, processed_at) VALUES (?, ?, ?, ?, ?)` +
			` ON CONFLICT (consumer, message_id) DO UPDATE SET processed_at = excluded.processed_at`
	}
	if d == outbox.Postgres {
		// The id's insert waits for a concurrent copy's transaction, then finds the id taken.
		// Positions are not written here: DeleteExpired folds the positions of the ids it
		// deletes into <table>_keys (expireProcessed), so that a message costs one row.
		q.processPGClear = `WITH ins AS (INSERT INTO ` + p + ` (consumer, message_id, key, position, processed_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1),` +
			` clr AS (DELETE FROM ` + a + ` WHERE consumer = $1 AND message_id = $2 AND EXISTS (SELECT FROM ins))` +
			` SELECT EXISTS (SELECT FROM ins)`
		// Attempt's statement: count the delivery unless the id is processed; it returns
		// whether it is, and the count and last error.
		q.attemptPG = `WITH seen AS (SELECT FROM ` + p + ` WHERE consumer = $1 AND message_id = $2),` +
			` up AS (INSERT INTO ` + a + ` AS t (consumer, message_id, attempts, last_error, updated_at) SELECT $1, $2, 1, '', $3 WHERE NOT EXISTS (SELECT FROM seen)` +
			` ON CONFLICT (consumer, message_id) DO UPDATE SET attempts = t.attempts + 1, updated_at = excluded.updated_at RETURNING attempts, last_error)` +
			` SELECT EXISTS (SELECT FROM seen), coalesce((SELECT attempts FROM up), 0), coalesce((SELECT last_error FROM up), '')`
		// DeliverBatch's statement: the same for a batch of messages given as arrays. Ids are
		// inserted in sorted order, so that concurrent batches cannot deadlock.
		q.processBatchPG = `WITH m AS (SELECT * FROM unnest($2::text[], $3::text[], $4::bigint[]) AS m(message_id, key, position)),` +
			` ins AS (INSERT INTO ` + p + ` (consumer, message_id, key, position, processed_at) SELECT $1, message_id, key, position, $5 FROM m ORDER BY message_id ON CONFLICT DO NOTHING RETURNING message_id),` +
			` clr AS (DELETE FROM ` + a + ` WHERE consumer = $1 AND message_id = ANY($6::text[]) AND message_id IN (SELECT message_id FROM ins))` +
			` SELECT message_id FROM ins`
		q.keyPositionsPG = `SELECT key, position FROM ` + k + ` WHERE consumer = $1 AND key = ANY($2::text[]) ORDER BY key FOR SHARE`
		// One bounded statement per batch: the expired ids are deleted and the greatest
		// position of each of their keys is folded into <table>_keys in the same
		// transaction, in key order (concurrent runs cannot deadlock), so that a late copy
		// always finds either its id or its key's position.
		q.expireProcessedPG = `WITH del AS (DELETE FROM ` + p + ` WHERE ctid IN (SELECT ctid FROM ` + p + ` WHERE consumer = $1 AND processed_at < $2 LIMIT $3) RETURNING key, position),` +
			` fold AS (INSERT INTO ` + k + ` AS t (consumer, key, position, updated_at) SELECT $1, key, max(position), $4 FROM del WHERE key <> '' AND position > 0 GROUP BY key ORDER BY key` +
			` ON CONFLICT (consumer, key) DO UPDATE SET position = GREATEST(t.position, excluded.position), updated_at = GREATEST(t.updated_at, excluded.updated_at))` +
			` SELECT count(*) FROM del`
		for _, s := range []*string{
			&q.isProcessed, &q.insertProcessed, &q.keyPosition,
			&q.deleteAttempts, &q.upsertAttempt, &q.readAttempt, &q.uncountAttempt, &q.failed, &q.insertDead,
			&q.listDead, &q.getDead, &q.markRetried, &q.nextRetried, &q.unmarkRetried, &q.touchProcessed, &q.purgeDead,
			&q.expireKeys, &q.expireAttempts,
		} {
			*s = dollars(*s)
		}
	}
	return q
}

// dollars numbers the ? placeholders of q as $1, $2...: the statements above hold no other
// question mark.
func dollars(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
