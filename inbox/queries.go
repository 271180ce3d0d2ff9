package inbox

import (
	"strconv"
	"strings"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/sqlident"
)

// keyTouchMicros is how stale a key's updated_at may get before Process moves it: an hour,
// against a KeyRetention of days.
const keyTouchMicros = int64(time.Hour / time.Microsecond)

// queries are the statements of one dialect and table, built once by New.
type queries struct {
	isProcessed     string
	insertProcessed string
	processPG       string // PostgreSQL: Process's steps in one statement
	processPGClear  string // processPG that also clears the attempt count
	processBatchPG  string // PostgreSQL: processPGClear for a batch
	keyPosition     string
	upsertKey       string
	deleteAttempts  string
	upsertAttempt   string
	readAttempt     string
	uncountAttempt  string
	failed          string
	insertDead      string
	listDead        string
	getDead         string
	markRetried     string
	nextRetried     string
	unmarkRetried   string
	touchProcessed  string
	purgeDead       string
	expireProcessed string
	expireKeys      string
	expireAttempts  string
}

const deadColumns = "message_id, topic, type, source, %k, msg_time, headers, payload, position, attempts, last_error, dead_at"

func buildQueries(d outbox.Dialect, t sqlident.Table) queries {
	quote := sqlident.Table.Quoted
	key := "key"
	forUpdate, skipLocked := " FOR UPDATE", " FOR UPDATE SKIP LOCKED"
	switch d {
	case outbox.MySQL:
		quote = sqlident.Table.QuotedMySQL
		key = "`key`"
	case outbox.SQLite:
		forUpdate, skipLocked = "", "" // one writer at a time: nothing to lock
	}
	p := quote(t)
	k := quote(t.Derived("_keys"))
	a := quote(t.Derived("_attempts"))
	dead := quote(t.Derived("_dead"))
	cols := strings.ReplaceAll(deadColumns, "%k", key)
	q := queries{
		isProcessed:    `SELECT count(*) FROM ` + p + ` WHERE consumer = ? AND message_id = ?`,
		keyPosition:    `SELECT position FROM ` + k + ` WHERE consumer = ? AND ` + key + ` = ?` + forUpdate,
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
		q.upsertKey = `INSERT INTO ` + k + ` (consumer, ` + key + `, position, updated_at) VALUES (?, ?, ?, ?)` +
			` ON DUPLICATE KEY UPDATE position = GREATEST(position, VALUES(position)), updated_at = VALUES(updated_at)`
		q.upsertAttempt = `INSERT INTO ` + a + ` (consumer, message_id, attempts, last_error, updated_at) VALUES (?, ?, 1, '', ?)` +
			` ON DUPLICATE KEY UPDATE attempts = attempts + 1, updated_at = VALUES(updated_at)`
		q.failed = `INSERT INTO ` + a + ` (consumer, message_id, attempts, last_error, updated_at) VALUES (?, ?, 1, ?, ?)` +
			` ON DUPLICATE KEY UPDATE last_error = VALUES(last_error), updated_at = VALUES(updated_at)`
		q.insertDead = `INSERT INTO ` + dead + deadValues +
			` ON DUPLICATE KEY UPDATE attempts = VALUES(attempts), last_error = VALUES(last_error), dead_at = VALUES(dead_at), retried_at = NULL`
		q.expireProcessed = `DELETE FROM ` + p + ` WHERE consumer = ? AND processed_at < ? LIMIT ?`
		q.expireKeys = `DELETE FROM ` + k + ` WHERE consumer = ? AND updated_at < ? LIMIT ?`
		q.expireAttempts = `DELETE FROM ` + a + ` WHERE consumer = ? AND updated_at < ? LIMIT ?`
		q.touchProcessed = `INSERT INTO ` + p + ` (consumer, message_id, ` + key + `, position, processed_at) VALUES (?, ?, ?, ?, ?)` +
			` ON DUPLICATE KEY UPDATE processed_at = VALUES(processed_at)`
	default:
		// PostgreSQL and SQLite share the upsert syntax; SQLite reads unqualified columns
		// of DO UPDATE as the existing row's, PostgreSQL needs the alias.
		alias, ref, greatest := " AS t", "t.", "GREATEST"
		if d == outbox.SQLite {
			alias, ref, greatest = "", "", "max"
		}
		q.insertProcessed = `INSERT INTO ` + p + ` (consumer, message_id, key, position, processed_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`
		q.upsertKey = `INSERT INTO ` + k + alias + ` (consumer, key, position, updated_at) VALUES (?, ?, ?, ?)` +
			` ON CONFLICT (consumer, key) DO UPDATE SET position = ` + greatest + `(` + ref + `position, excluded.position), updated_at = excluded.updated_at`
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
		q.expireProcessed = batch(p, "processed_at")
		q.expireKeys = batch(k, "updated_at")
		q.expireAttempts = batch(a, "updated_at")
		q.touchProcessed = `INSERT INTO ` + p + ` (consumer, message_id, key, position, processed_at) VALUES (?, ?, ?, ?, ?)` +
			` ON CONFLICT (consumer, message_id) DO UPDATE SET processed_at = excluded.processed_at`
	}
	if d == outbox.Postgres {
		// The main query reads ins (the id's insert, which waits for a concurrent copy's
		// transaction), then old (the key's row, locked); adv and clr, which it does not
		// read, run after it, so old is the position before this message.
		// A key's updated_at (what KeyRetention expires by) moves only when it is an hour
		// old: most updates then change no indexed column, and PostgreSQL updates the row in
		// place (HOT) instead of adding an index entry per message.
		pg := func(clear string) string {
			return `WITH ins AS (INSERT INTO ` + p + ` (consumer, message_id, key, position, processed_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1),` +
				` old AS (SELECT position FROM ` + k + ` WHERE consumer = $1 AND key = $3 AND $4 > 0 AND EXISTS (SELECT FROM ins) FOR UPDATE),` +
				` adv AS (INSERT INTO ` + k + ` AS t (consumer, key, position, updated_at) SELECT $1, $3, $4, $5 WHERE $3 <> '' AND $4 > 0 AND EXISTS (SELECT FROM ins)` +
				` ON CONFLICT (consumer, key) DO UPDATE SET position = GREATEST(t.position, excluded.position),` +
				` updated_at = CASE WHEN t.updated_at < excluded.updated_at - ` + strconv.FormatInt(keyTouchMicros, 10) + ` THEN excluded.updated_at ELSE t.updated_at END)` +
				clear + ` SELECT EXISTS (SELECT FROM ins), (SELECT position FROM old)`
		}
		q.processPG = pg("")
		// DeliverBatch's statement: the same steps for a batch of messages given as arrays.
		// Ids, then keys, are locked in sorted order, so that concurrent batches (and single
		// messages: id, then key) cannot deadlock.
		q.processBatchPG = `WITH m AS (SELECT * FROM unnest($2::text[], $3::text[], $4::bigint[]) AS m(message_id, key, position)),` +
			` ins AS (INSERT INTO ` + p + ` (consumer, message_id, key, position, processed_at) SELECT $1, message_id, key, position, $5 FROM m ORDER BY message_id ON CONFLICT DO NOTHING RETURNING message_id, key, position),` +
			` old AS (SELECT key, position FROM ` + k + ` WHERE consumer = $1 AND key IN (SELECT key FROM ins WHERE key <> '' AND position > 0) ORDER BY key FOR UPDATE),` +
			` adv AS (INSERT INTO ` + k + ` AS t (consumer, key, position, updated_at) SELECT $1, key, max(position), $5 FROM ins WHERE key <> '' AND position > 0 GROUP BY key ORDER BY key` +
			` ON CONFLICT (consumer, key) DO UPDATE SET position = GREATEST(t.position, excluded.position),` +
			` updated_at = CASE WHEN t.updated_at < excluded.updated_at - ` + strconv.FormatInt(keyTouchMicros, 10) + ` THEN excluded.updated_at ELSE t.updated_at END),` +
			` clr AS (DELETE FROM ` + a + ` WHERE consumer = $1 AND message_id = ANY($6::text[]) AND message_id IN (SELECT message_id FROM ins))` +
			` SELECT true, message_id, 0::bigint FROM ins UNION ALL SELECT false, key, position FROM old`
		q.processPGClear = pg(`, clr AS (DELETE FROM ` + a + ` WHERE consumer = $1 AND message_id = $2 AND EXISTS (SELECT FROM ins))`)
		for _, s := range []*string{
			&q.isProcessed, &q.insertProcessed, &q.keyPosition, &q.upsertKey,
			&q.deleteAttempts, &q.upsertAttempt, &q.readAttempt, &q.uncountAttempt, &q.failed, &q.insertDead,
			&q.listDead, &q.getDead, &q.markRetried, &q.nextRetried, &q.unmarkRetried, &q.touchProcessed, &q.purgeDead,
			&q.expireProcessed, &q.expireKeys, &q.expireAttempts,
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
