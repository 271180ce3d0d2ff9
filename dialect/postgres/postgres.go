package postgres

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/migrate"
	"github.com/outboxgo/outbox/internal/sqlident"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Config configures a Store.
type Config struct {
	// Pool is the connection pool to use. The Store does not close a pool it was given.
	Pool *pgxpool.Pool
	// URL is a PostgreSQL connection string, used when Pool is nil. Its sessions are named
	// ApplicationName unless it sets application_name.
	URL string
	// MaxConns bounds the pool the Store creates from URL. Default 10.
	MaxConns int32
	// Table is the outbox table, optionally schema-qualified. Default "outbox".
	Table string
	// Logger receives diagnostics. Default slog.Default().
	Logger *slog.Logger
	// AsyncCommit commits the relay's claim transactions (deleting or marking published
	// rows, retries, dead letters) with synchronous_commit = off: a batch does not wait for
	// its WAL flush. Producers' transactions are not affected. The price is at-least-once
	// only: if the database server crashes, the last few hundred milliseconds of these
	// commits (3 × wal_writer_delay at most) are undone, and their messages are published
	// again (duplicates, dropped by JetStream within its dedupe window); a lost retry or
	// dead-letter move is attempted again. Commits are lost as a suffix, so first deliveries
	// keep their per-key order. Off by default.
	AsyncCommit bool
}

// ApplicationName is the application_name of the sessions a Store opens from a URL that sets
// none.
const ApplicationName = "outbox-relay"

// Store is a PostgreSQL outbox. It implements dialect.Store, and dialect.HeldWriter for the WAL
// source (relay/wal).
type Store struct {
	pool    *pgxpool.Pool
	ownPool bool
	table   sqlident.Table
	names   migrate.Names
	writer  *outbox.Writer
	logger  *slog.Logger
	q       queries
	held    heldQueries
	iq      inspectQueries // inspect.go
	async   bool           // Config.AsyncCommit
	// nowaitOff: until when (unix nanoseconds) claims skip the NOWAIT attempt.
	nowaitOff atomic.Int64
}

var _ dialect.Store = (*Store)(nil)

// New validates cfg and returns a Store. It does not create tables: call MigrateUp.
func New(ctx context.Context, cfg Config) (*Store, error) {
	cfg.Table = cmp.Or(cfg.Table, outbox.DefaultTable)
	t, err := sqlident.Parse(cfg.Table)
	if err != nil {
		return nil, &outbox.ConfigError{Field: "table", Reason: err.Error()}
	}
	w, err := outbox.NewWriter(outbox.WriterConfig{Dialect: outbox.Postgres, Table: cfg.Table})
	if err != nil {
		return nil, err
	}
	s := &Store{table: t, names: migrate.NamesFor(t), writer: w, logger: cmp.Or(cfg.Logger, slog.Default()), async: cfg.AsyncCommit}
	s.q, s.held, s.iq = buildQueries(s.names), buildHeldQueries(s.names), buildInspectQueries(s.names)
	switch {
	case cfg.Pool != nil:
		s.pool = cfg.Pool
	case cfg.URL != "":
		pcfg, err := pgxpool.ParseConfig(cfg.URL)
		if err != nil {
			return nil, &outbox.ConfigError{Field: "database_url", Reason: err.Error()}
		}
		pcfg.MaxConns = cmp.Or(cfg.MaxConns, 10)
		if pcfg.ConnConfig.RuntimeParams["application_name"] == "" {
			// Names the sessions in pg_stat_activity; a URL that names them wins.
			pcfg.ConnConfig.RuntimeParams["application_name"] = ApplicationName
		}
		s.pool, err = pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			return nil, fmt.Errorf("connecting to postgres: %w", err)
		}
		s.ownPool = true
	default:
		return nil, &outbox.ConfigError{Field: "database_url", Reason: "required (or a pool)"}
	}
	return s, nil
}

// Pool returns the store's connection pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Dialect implements dialect.Claimer and dialect.Admin.
func (s *Store) Dialect() outbox.Dialect { return outbox.Postgres }

// Close closes the pool if the Store created it.
func (s *Store) Close() error {
	if s.ownPool {
		s.pool.Close()
	}
	return nil
}

type queries struct {
	claimNowait, claimSkipLocked, orderCheck string
	del, markPublished, retry, toDead        string
	salvage, toDeadSalvaged                  string
	duplicates, topics                       string
	heartbeat, expire, members, leave        string
	openGate, closeGate, advanceGate         string // the wake-up gate (gate.go)
	inProgress, running                      string
	relock                                   string
	deletePublished, stats                   string
	deadList, deadRetry, deadPurge           string
	deadIDs                                  string
	recordDelete, recordMark                 string // RecordPublished (recorder.go)
}

func buildQueries(n migrate.Names) queries {
	const cols = "id, message_id, topic, key, type, payload, headers, created_at, attempts"
	// hashtextextended is stable across versions and platforms; the mask keeps it
	// non-negative so mod() yields 0..n-1.
	const keyHash = "(hashtextextended(coalesce(key, message_id::text), 0) & 9223372036854775807)"
	// The relay's and the worker's slice of the key space. Wrapped in CASE so the planner
	// estimates it at one half: as two equalities on an expression it guessed 0.0025 % of the
	// rows and chose to read and sort the whole backlog (on disk, with payloads: 100 ms per
	// claim of a 100k backlog) over walking the id index until the LIMIT is reached (3 ms).
	const slice = "CASE WHEN mod(" + keyHash + ", greatest($1::int, 1)) = $2::int\n" +
		"    AND mod(" + keyHash + " / greatest($1::int, 1), greatest($5::int, 1)) = $6::int THEN true ELSE false END"
	return queries{
		// The fast claim, for relays without a topic filter: the slice's unpublished rows in id
		// order, every one of them (ready or backing off), each locked with NOWAIT. It fails
		// (55P03) if any of them is locked by another claim; otherwise it has seen every
		// earlier row of each key it returns, so per-key order needs no second query: a key's
		// rows are usable up to its first one that is not ready. (Rows committed after the
		// statement's snapshot come later in commit order than all it returns.) Keyless rows
		// that are not ready block nothing and are left out.
		//
		// Ready means available_at <= clock_timestamp(), read as each row is checked, not
		// now(): now() is when the claim's transaction began, and a producer's transaction
		// can begin after that and commit before the claim's snapshot (the claim's backend
		// descheduled between BEGIN and SELECT). Its row, visible but "due" after now(),
		// would block its key until the relay's next poll — the 1 s stalls of LISTEN/NOTIFY
		// relays. Every visible row committed before the snapshot, so its default
		// available_at (its transaction's start) is before any clock_timestamp() read here.
		claimNowait: `SELECT ` + cols + `, available_at <= clock_timestamp(), available_at, ctid FROM ` + n.Table + `
WHERE published_at IS NULL
  AND ` + slice + `
  AND (key IS NULL OR NOT key = ANY($3::text[]))
  AND (key IS NOT NULL OR available_at <= clock_timestamp() OR available_at = 'infinity')
ORDER BY id
LIMIT $4
FOR UPDATE NOWAIT`,
		// The general claim (topic filters or exclusions, or after a NOWAIT conflict): ready rows, skipping
		// locked ones, followed by orderCheck. Ready as in claimNowait. A row available at
		// 'infinity' would never be ready and block its key for ever: it is taken, to be
		// dead-lettered as unreadable.
		claimSkipLocked: `SELECT ` + cols + `, true, available_at, ctid FROM ` + n.Table + `
WHERE published_at IS NULL AND (available_at <= clock_timestamp() OR available_at = 'infinity')
  AND ` + slice + `
  AND (key IS NULL OR NOT key = ANY($3::text[]))
  AND (cardinality($7::text[]) = 0 OR topic = ANY($7::text[]))
  AND NOT topic = ANY($8::text[])
ORDER BY id
LIMIT $4
FOR UPDATE SKIP LOCKED`,
		// For each claimed key: how many unpublished rows exist up to the last claimed one.
		// If that exceeds what was claimed, an earlier row is held elsewhere or backing off.
		// until is the latest available_at among them: when a backing-off head is due again.
		// ORDER BY id LIMIT n+1 makes it a plain index scan that stops early and marks the
		// entries of deleted rows dead as it passes them (the bitmap scan the planner picks
		// for a plain count(*) revisits every deleted row of the key on every claim until
		// vacuum: 40 ms per claim of 1,000 rows late in a 100k drain).
		orderCheck: `SELECT k.key, c.until FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS k(key, maxid, n)
CROSS JOIN LATERAL (SELECT count(*) AS cnt, max(f.available_at) AS until FROM (
  SELECT e.available_at FROM ` + n.Table + ` e
  WHERE e.key = k.key AND e.id <= k.maxid AND e.published_at IS NULL ORDER BY e.id LIMIT k.n + 1) AS f) AS c
WHERE c.cnt <> k.n`,
		// Published rows are addressed by ctid: the claim holds them locked, so their
		// tuples cannot move, and a TID scan skips a primary-key descent per row (1.4 ms
		// instead of 2.9 ms for 1,000 rows).
		del: `DELETE FROM ` + n.Table + ` WHERE ctid = ANY($1::tid[])`,
		// A checkpoint's new transaction locks the claim's rows again, by the tuples it
		// held: a row changed (or locked) by another claim in between is not found (or
		// fails the statement), so the count tells whether the claim still holds them all.
		relock:        `SELECT count(*) FROM (SELECT 1 FROM ` + n.Table + ` WHERE ctid = ANY($1::tid[]) FOR UPDATE NOWAIT) AS l`,
		markPublished: `UPDATE ` + n.Table + ` SET published_at = clock_timestamp() WHERE ctid = ANY($1::tid[])`,
		// u.na: not attempted (the sink was unavailable), attempts stay.
		retry: `UPDATE ` + n.Table + ` AS t SET attempts = t.attempts + CASE WHEN u.na THEN 0 ELSE 1 END,
  available_at = clock_timestamp() + u.delay_us * interval '1 microsecond', last_error = u.err, last_error_at = clock_timestamp()
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bool[]) AS u(id, delay_us, err, na) WHERE t.id = u.id`,
		duplicates: `UPDATE ` + n.Sibling("_counters") + ` SET value = value + $1 WHERE name = 'broker_duplicates'`,
		// Per topic with failing unpublished rows (last_error set): how many, and the error
		// written last. At most 100 topics, most failing first.
		topics: `SELECT topic, count(*) AS n, (array_agg(last_error ORDER BY last_error_at DESC NULLS LAST, id DESC))[1]
FROM ` + n.Table + ` WHERE published_at IS NULL AND last_error IS NOT NULL
GROUP BY topic ORDER BY n DESC, topic LIMIT 100`,
		toDead: `WITH moved AS (
  DELETE FROM ` + n.Table + ` AS t USING unnest($1::bigint[], $2::text[]) AS u(id, err)
  WHERE t.id = u.id RETURNING t.*, u.err)
INSERT INTO ` + n.Dead + ` (original_id, message_id, topic, key, type, payload, headers, created_at, attempts, last_error, failed_at)
SELECT id, message_id, topic, key, type, payload, headers, created_at, least(attempts::bigint + 1, 2147483647), err, clock_timestamp() FROM moved ORDER BY id`,
		// The columns toDeadSalvaged does not copy, as text (for the reason).
		salvage: `SELECT message_id::text, headers::text, created_at::text, attempts::text FROM ` + n.Table + ` WHERE id = $1`,
		toDeadSalvaged: `WITH moved AS (DELETE FROM ` + n.Table + ` WHERE id = $1 RETURNING *)
INSERT INTO ` + n.Dead + ` (original_id, message_id, topic, key, type, payload, headers, created_at, attempts, last_error, failed_at)
SELECT id, $2::uuid, topic, key, type, payload, '{}', clock_timestamp(), 0, $3, clock_timestamp() FROM moved`,
		heartbeat: `INSERT INTO ` + n.Relays + ` (relay_id, grp, heartbeat_at) VALUES ($1, $2, now())
ON CONFLICT (relay_id) DO UPDATE SET grp = $2, heartbeat_at = now()`,
		expire:  `DELETE FROM ` + n.Relays + ` WHERE heartbeat_at < now() - $1::bigint * interval '1 microsecond'`,
		members: `SELECT relay_id FROM ` + n.Relays + ` WHERE grp = $1 ORDER BY relay_id`,
		leave:   `DELETE FROM ` + n.Relays + ` WHERE relay_id = $1`,
		// The gate (migration 6): open while _wake_until is ahead of _wake_clock, both in
		// milliseconds of the database's clock. Opening never moves the deadline back (another
		// relay may hold it further ahead), puts it ahead of the clock (which a closing may
		// have moved past the time) and reports whether the gate was open before.
		openGate: `SELECT coalesce(pg_sequence_last_value(` + n.Regclass("_wake_until") + `) > pg_sequence_last_value(` + n.Regclass("_wake_clock") + `), false),
  setval(` + n.Regclass("_wake_until") + `, greatest(coalesce(pg_sequence_last_value(` + n.Regclass("_wake_until") + `), 0),
    greatest(coalesce(pg_sequence_last_value(` + n.Regclass("_wake_clock") + `), 0), ` + gateNow + `) + $1::bigint)),
  setval(` + n.Regclass("_wake_clock") + `, greatest(coalesce(pg_sequence_last_value(` + n.Regclass("_wake_clock") + `), 0), ` + gateNow + `))`,
		closeGate: `SELECT setval(` + n.Regclass("_wake_clock") + `, greatest(coalesce(pg_sequence_last_value(` + n.Regclass("_wake_clock") + `), 0),
  coalesce(pg_sequence_last_value(` + n.Regclass("_wake_until") + `), 0), ` + gateNow + `))`,
		// Writes only while the gate is open: a shut gate has nothing to run out.
		advanceGate: `SELECT CASE WHEN pg_sequence_last_value(` + n.Regclass("_wake_until") + `) > pg_sequence_last_value(` + n.Regclass("_wake_clock") + `)
  THEN setval(` + n.Regclass("_wake_clock") + `, greatest(pg_sequence_last_value(` + n.Regclass("_wake_clock") + `), ` + gateNow + `)) END`,
		// A snapshot lists the transactions in progress below its xmax; those at or above it
		// were assigned before this statement's own id (which it takes to bound them).
		inProgress: `WITH s AS (SELECT pg_current_snapshot() AS snap, pg_current_xact_id()::text::bigint AS me)
SELECT coalesce(array_agg(x ORDER BY x), '{}') FROM (
  SELECT x::text::bigint AS x FROM s, pg_snapshot_xip(s.snap) AS x
  UNION SELECT g FROM s, generate_series(pg_snapshot_xmax(s.snap)::text::bigint, s.me - 1) AS g) AS t`,
		running: `SELECT coalesce(array_agg(x), '{}') FROM unnest($1::bigint[]) AS x WHERE pg_xact_status(x::text::xid8) = 'in progress'`,
		deletePublished: `DELETE FROM ` + n.Table + ` WHERE id IN (SELECT id FROM ` + n.Table + `
WHERE published_at IS NOT NULL AND published_at < now() - $1::bigint * interval '1 microsecond' LIMIT $2)`,
		stats: `SELECT
  (SELECT count(*) FROM ` + n.Table + ` WHERE published_at IS NULL),
  (SELECT count(*) FROM ` + n.Table + ` WHERE published_at IS NULL AND available_at <= now()),
  (SELECT count(*) FROM ` + n.Table + ` WHERE published_at IS NULL AND attempts > 0),
  (SELECT coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 FROM ` + n.Table + ` WHERE published_at IS NULL AND isfinite(created_at)),
  (SELECT count(*) FROM ` + n.Dead + `),
  (SELECT count(*) FROM ` + n.Relays + ` WHERE heartbeat_at >= now() - interval '1 minute'),
  coalesce((SELECT value FROM ` + n.Sibling("_counters") + ` WHERE name = 'broker_duplicates'), 0)`,
		deadList: `SELECT id, original_id, message_id, topic, key, type, payload, headers, created_at, attempts, last_error, failed_at
FROM ` + n.Dead + ` WHERE id > $1 ORDER BY id LIMIT $2`,
		deadIDs: `SELECT id FROM ` + n.Dead + ` WHERE id > $1 ORDER BY id LIMIT $2`,
		deadRetry: `WITH moved AS (DELETE FROM ` + n.Dead + ` WHERE $1::bigint[] IS NULL OR id = ANY($1::bigint[]) RETURNING *)
INSERT INTO ` + n.Table + ` (message_id, topic, key, type, payload, headers, created_at)
SELECT message_id, topic, key, type, payload, headers, created_at FROM moved ORDER BY id`,
		deadPurge: `DELETE FROM ` + n.Dead + ` WHERE $1::bigint[] IS NULL OR id = ANY($1::bigint[])`,
		// RecordPublished: the rows of (id, message_id) still unpublished and locked by no
		// claim are deleted (marked); returned are those, and the ones not unpublished in
		// the statement's snapshot (gone already). Rows another claim holds are skipped.
		recordDelete: recordQuery(n.Table, `DELETE FROM `+n.Table+` WHERE id IN (SELECT id FROM l) RETURNING id`),
		recordMark:   recordQuery(n.Table, `UPDATE `+n.Table+` SET published_at = clock_timestamp() WHERE id IN (SELECT id FROM l) RETURNING id`),
	}
}

// Enqueue implements dialect.Admin.
func (s *Store) Enqueue(ctx context.Context, msgs ...outbox.Message) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return s.writer.Enqueue(ctx, tx, msgs...)
	})
}

// Writer returns the outbox.Writer for this store's table, for use in business transactions.
func (s *Store) Writer() *outbox.Writer { return s.writer }

// nowaitPause is how long the store claims with SKIP LOCKED after a NOWAIT claim met a row
// locked by another claim (relays changing membership, relays of other topic groups).
const nowaitPause = 5 * time.Second

// lockNotAvailable is the SQLSTATE of a NOWAIT lock conflict.
const lockNotAvailable = "55P03"

// gateNow is the database's time in milliseconds, for the wake-up gate's sequences.
const gateNow = `(extract(epoch FROM clock_timestamp()) * 1000)::bigint`

// Claim implements dialect.Claimer.
//
// A claim is one transaction on one connection: BEGIN travels with the claiming query and
// COMMIT with the outcome's updates (Finish), so a batch costs two round trips. Without a
// topic filter the store first tries the NOWAIT claim, which needs no order check; a lock
// conflict sends it to SKIP LOCKED and the order check for nowaitPause.
func (s *Store) Claim(ctx context.Context, req dialect.ClaimRequest) (dialect.Claim, error) {
	if req.Limit <= 0 {
		return nil, errors.New("claim: limit must be positive")
	}
	skip, topics, exclude := req.SkipKeys, req.Topics, req.ExcludeTopics
	if skip == nil {
		skip = []string{}
	}
	if topics == nil {
		topics = []string{}
	}
	if exclude == nil {
		exclude = []string{}
	}
	// Excluded topics (paused ones) leave rows out that come first for their keys: the NOWAIT
	// claim's per-key order rests on seeing every row, so the general claim's check runs.
	if len(topics) == 0 && len(exclude) == 0 && time.Now().UnixNano() >= s.nowaitOff.Load() {
		c, err := s.claimWith(ctx, req, true, s.q.claimNowait, req.Partitions, req.Partition, skip, req.Limit, req.Slots, req.Slot)
		if err == nil {
			return c, nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != lockNotAvailable {
			return nil, err
		}
		s.nowaitOff.Store(time.Now().Add(nowaitPause).UnixNano())
	}
	c, err := s.claimWith(ctx, req, false, s.q.claimSkipLocked, req.Partitions, req.Partition, skip, req.Limit, req.Slots, req.Slot, topics, exclude)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// claimWith runs one claiming query in a new transaction. nowait: the query saw every row of
// the slice up to its LIMIT, and per-key order follows from the rows themselves; otherwise
// the order check runs.
func (s *Store) claimWith(ctx context.Context, req dialect.ClaimRequest, nowait bool, query string, args ...any) (*claim, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("claiming: %w", err)
	}
	c := &claim{s: s, conn: conn, retain: req.Retain}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	if s.async {
		b.Queue("SET LOCAL synchronous_commit = off")
	}
	b.Queue(query, args...)
	br := conn.SendBatch(ctx, b)
	_, err = br.Exec()
	if err == nil && s.async {
		_, err = br.Exec()
	}
	var (
		sc      scanned
		blocked map[string]time.Time
	)
	if err == nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			sc, err = scanRecords(rows, req.Limit, req.MaxBytes)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		c.rollback()
		return nil, fmt.Errorf("claiming: %w", err)
	}
	if len(sc.bad) > 0 {
		// Rows no relay can read (written by hand or by another language) must not block
		// every later claim: they go to the dead letters with the reason, in this claim.
		if err := c.deadLetter(ctx, sc.bad); err != nil {
			c.rollback()
			return nil, fmt.Errorf("claiming: dead-lettering unreadable rows: %w", err)
		}
	}
	recs, tids := sc.recs, sc.tids
	if nowait {
		blocked = sc.blocked
	} else if len(recs) > 0 {
		if blocked, err = s.checkOrder(ctx, conn, recs); err != nil {
			c.rollback()
			return nil, fmt.Errorf("claiming: checking key order: %w", err)
		}
		if len(blocked) > 0 {
			kept, keptTIDs := recs[:0], tids[:0]
			for i, r := range recs {
				if _, b := blocked[r.Key]; !b || r.Key == "" {
					kept, keptTIDs = append(kept, r), append(keptTIDs, tids[i])
				}
			}
			recs, tids = kept, keptTIDs
		}
	}
	for k, until := range blocked {
		c.blocked = append(c.blocked, dialect.BlockedKey{Key: k, Until: until})
	}
	c.recs = recs
	// The SKIP LOCKED claim passes over rows held by others: never exhaustive.
	c.exhausted = nowait && sc.read < req.Limit && !sc.cut
	c.held = make(map[int64]pgtype.TID, len(recs))
	for i := range recs {
		c.held[recs[i].Seq] = tids[i]
	}
	if len(recs) == 0 && len(sc.bad) == 0 {
		c.rollback()
	}
	return c, nil
}

// checkOrder returns the keys whose claimed rows are not a complete prefix of the key's
// unpublished rows.
func (s *Store) checkOrder(ctx context.Context, conn *pgxpool.Conn, recs []outbox.Record) (map[string]time.Time, error) {
	type agg struct{ maxID, n int64 }
	byKey := make(map[string]*agg)
	var order []string
	for i := range recs {
		k := recs[i].Key
		if k == "" {
			continue
		}
		a := byKey[k]
		if a == nil {
			a = &agg{}
			byKey[k] = a
			order = append(order, k)
		}
		a.maxID = max(a.maxID, recs[i].Seq)
		a.n++
	}
	if len(order) == 0 {
		return nil, nil
	}
	maxIDs := make([]int64, len(order))
	counts := make([]int64, len(order))
	for i, k := range order {
		maxIDs[i], counts[i] = byKey[k].maxID, byKey[k].n
	}
	rows, err := conn.Query(ctx, s.q.orderCheck, order, maxIDs, counts)
	if err != nil {
		return nil, err
	}
	var (
		key   string
		until pgtype.Timestamptz // infinite for a row available at 'infinity'
		out   map[string]time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&key, &until}, func() error {
		if out == nil {
			out = make(map[string]time.Time)
		}
		out[key] = finite(until)
		return nil
	})
	return out, err
}

// badRow is a claimed row that cannot be decoded.
type badRow struct {
	seq    int64
	reason string
}

// finite is t's time, or the zero time for NULL and the infinities.
func finite(t pgtype.Timestamptz) time.Time {
	if !t.Valid || t.InfinityModifier != pgtype.Finite {
		return time.Time{}
	}
	return t.Time
}

// timeColumn checks a timestamptz column: NULL and the infinities are no time.
func timeColumn(column string, t pgtype.Timestamptz) error {
	if t.Valid && t.InfinityModifier == pgtype.Finite {
		return nil
	}
	v := []byte(t.InfinityModifier.String())
	if !t.Valid {
		v = nil
	}
	return dialect.Unreadable(column, v, errors.New("is not a time"))
}

// Columns of the claiming queries read raw by scanRecords.
const (
	colTopic   = 2
	colKey     = 3
	colType    = 4
	colHeaders = 6
)

// scanned is what scanRecords read from a claiming query.
type scanned struct {
	recs    []outbox.Record
	tids    []pgtype.TID // of recs
	bad     []badRow
	blocked map[string]time.Time // keys with a row that is not ready: when it will be
	read    int                  // rows the query returned, taken or not
	cut     bool                 // rows were left for the byte bound
}

// scanRecords reads claimed rows in id order. A key's rows are taken up to its first row that
// is not ready (backing off); that key is then blocked until the row's available_at. An
// unreadable row (any column) is set apart, to be dead-lettered by the claim; the key's later
// rows follow it in the same claim. The records taken are a prefix whose payloads stay within
// maxBytes (0: no bound; the first row is always kept). Rows past the bound stay locked until
// the claim ends and are then released untouched.
func scanRecords(rows pgx.Rows, limit, maxBytes int) (scanned, error) {
	defer rows.Close()
	var (
		sc       scanned
		bytes    int
		seq      int64
		id       pgtype.UUID // not uuid.UUID: pgx would go through its text form
		payload  []byte      // pgx makes a new slice for every row
		created  pgtype.Timestamptz
		attempts int64
		ready    bool
		avail    pgtype.Timestamptz
		tid      pgtype.TID
		// One destination list for all rows (a variadic list per row is an allocation);
		// topic, key, type and headers are read raw below (text is the same bytes in
		// both formats).
		dest = []any{&seq, &id, nil, nil, nil, &payload, nil, &created, &attempts, &ready, &avail, &tid}
		// Rows in a row mostly share their topic and type: reuse the previous row's string.
		topic, typ string
	)
	same := func(prev *string, b []byte) string {
		if *prev != string(b) {
			*prev = string(b)
		}
		return *prev
	}
	jsonbBinary := -1 // unknown until the first row
	// Scanned in place: a Record is large, and growing the slice copies them all.
	sc.recs = make([]outbox.Record, 0, min(limit, 1024))
	sc.tids = make([]pgtype.TID, 0, cap(sc.recs))
	for rows.Next() {
		sc.read++
		sc.recs = append(sc.recs, outbox.Record{})
		r := &sc.recs[len(sc.recs)-1]
		if err := rows.Scan(dest...); err != nil {
			return scanned{}, err
		}
		r.Seq, r.Payload, r.CreatedAt = seq, payload, created.Time
		raw := rows.RawValues()
		if jsonbBinary < 0 {
			jsonbBinary = 0
			if rows.FieldDescriptions()[colHeaders].Format == pgx.BinaryFormatCode {
				jsonbBinary = 1
			}
		}
		r.ID = id.Bytes
		r.Topic = same(&topic, raw[colTopic])
		if raw[colKey] != nil {
			r.Key = string(raw[colKey])
		}
		r.Type = same(&typ, raw[colType])
		headers := raw[colHeaders]
		if jsonbBinary == 1 && len(headers) > 0 {
			if headers[0] != 1 {
				return scanned{}, fmt.Errorf("headers: unknown jsonb binary version %d", headers[0])
			}
			headers = headers[1:]
		}
		if r.Key != "" {
			if _, b := sc.blocked[r.Key]; b {
				sc.recs = sc.recs[:len(sc.recs)-1]
				continue
			}
		}
		// Checked before readiness: a row available at 'infinity' is never ready.
		availErr := timeColumn("available_at", avail)
		if !ready && availErr == nil {
			sc.recs = sc.recs[:len(sc.recs)-1]
			if r.Key != "" {
				if sc.blocked == nil {
					sc.blocked = make(map[string]time.Time)
				}
				sc.blocked[r.Key] = avail.Time
			}
			continue
		}
		if maxBytes > 0 && len(sc.recs) > 1 && bytes+len(r.Payload) > maxBytes {
			sc.recs = sc.recs[:len(sc.recs)-1]
			sc.cut = true
			break
		}
		err := availErr
		if err == nil {
			err = decodeRest(r, headers, created, attempts)
		}
		if err != nil {
			sc.bad = append(sc.bad, badRow{seq: r.Seq, reason: err.Error()})
			sc.recs = sc.recs[:len(sc.recs)-1]
			continue
		}
		bytes += len(r.Payload)
		sc.tids = append(sc.tids, tid)
	}
	return sc, rows.Err()
}

// decodeRest checks and decodes what scanRecords read raw or could not check by type.
func decodeRest(r *outbox.Record, headers []byte, created pgtype.Timestamptz, attempts int64) error {
	if err := timeColumn("created_at", created); err != nil {
		return err
	}
	var err error
	if r.Attempts, err = dialect.Attempts(attempts); err != nil {
		return err
	}
	// PostgreSQL keeps text valid in UTF8 databases, not in SQL_ASCII ones.
	for _, c := range []struct{ name, v string }{{"topic", r.Topic}, {"key", r.Key}, {"type", r.Type}} {
		if _, err := dialect.Text(c.name, []byte(c.v)); err != nil {
			return err
		}
	}
	r.Headers, err = dialect.DecodeHeaders(headers)
	return err
}

type claim struct {
	s       *Store
	conn    *pgxpool.Conn // in a transaction until done
	retain  bool
	recs    []outbox.Record
	held    map[int64]pgtype.TID // the rows it may publish: their tuples (locked, so stable)
	blocked []dialect.BlockedKey
	dirty   bool // the claim already changed rows: commit even an empty outcome
	done    bool
	// recorded are the published messages a checkpoint committed; lost is why the claim
	// holds nothing any more after a failed checkpoint.
	recorded map[int64]bool
	lost     error
	// exhausted: the NOWAIT claim read every unpublished row of its share (fewer than its
	// limit, none cut by the byte bound, none unreadable).
	exhausted bool
}

func (c *claim) Records() []outbox.Record      { return c.recs }
func (c *claim) Blocked() []dialect.BlockedKey { return c.blocked }

// Exhausted implements dialect.Exhaustive.
func (c *claim) Exhausted() bool { return c.exhausted }

// deadLetter moves unreadable rows to the dead-letter table in the claim's transaction,
// copied by SQL so that they need not decode. If the dead-letter table refuses a copy, the
// rows go one by one, and a row that still fails is dead-lettered with placeholders for the
// columns that may not fit, their values in the reason.
func (c *claim) deadLetter(ctx context.Context, bad []badRow) error {
	ids := make([]int64, len(bad))
	errs := make([]string, len(bad))
	for i, b := range bad {
		ids[i], errs[i] = b.seq, b.reason
	}
	if err := c.savepoint(ctx, c.s.q.toDead, ids, errs); err != nil {
		for _, b := range bad {
			err := c.savepoint(ctx, c.s.q.toDead, []int64{b.seq}, []string{b.reason})
			if err == nil {
				continue
			}
			var vals [4]*string
			if serr := c.conn.QueryRow(ctx, c.s.q.salvage, b.seq).Scan(&vals[0], &vals[1], &vals[2], &vals[3]); serr != nil {
				return errors.Join(err, serr)
			}
			texts := make([]string, len(vals))
			for i, v := range vals {
				texts[i] = "NULL"
				if v != nil {
					texts[i] = *v
				}
			}
			reason := dialect.SalvageReason(b.reason, err, []string{"message_id", "headers", "created_at", "attempts"}, texts)
			if _, ferr := c.conn.Exec(ctx, c.s.q.toDeadSalvaged, b.seq, uuid.Nil, reason); ferr != nil {
				return errors.Join(err, ferr)
			}
		}
	}
	c.dirty = true
	return nil
}

// savepoint runs one statement inside a savepoint of the claim's transaction, rolled back to
// when the statement fails.
func (c *claim) savepoint(ctx context.Context, stmt string, args ...any) error {
	if _, err := c.conn.Exec(ctx, "SAVEPOINT dead_letter"); err != nil {
		return err
	}
	if _, err := c.conn.Exec(ctx, stmt, args...); err != nil {
		if _, rerr := c.conn.Exec(ctx, "ROLLBACK TO SAVEPOINT dead_letter"); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	_, err := c.conn.Exec(ctx, "RELEASE SAVEPOINT dead_letter")
	return err
}

// check refuses an outcome naming a row this claim does not hold for publishing: rows the
// order check left out are locked by the claim but belong to later claims.
func (c *claim) check(o outbox.Outcome) error {
	return o.CheckHeld(func(seq int64) bool { _, ok := c.held[seq]; return ok })
}

// rollback ends the transaction and returns the connection to the pool.
func (c *claim) rollback() {
	if c.done {
		return
	}
	c.done = true
	// A rollback on a broken connection fails; the server has then ended the transaction.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.end(ctx, "ROLLBACK")
}

// end runs ROLLBACK (or nothing, when the batch already ended the transaction) and releases
// the connection. A connection left in a transaction is closed, never reused: the pool
// destroys it on release.
func (c *claim) end(ctx context.Context, stmt string) {
	if c.conn.Conn().PgConn().TxStatus() != 'I' {
		if _, err := c.conn.Exec(ctx, stmt); err != nil {
			_ = c.conn.Conn().Close(ctx)
		}
	}
	c.conn.Release()
}

var _ dialect.Checkpointer = (*claim)(nil)

// Checkpoint implements dialect.Checkpointer, in one round trip: the published rows' delete
// (or mark) and COMMIT, then BEGIN and the lock of the claim's other rows again, by their
// tuples, with NOWAIT. Between the COMMIT and the lock another claim could take them (a
// moment of a statement's length, and only a claim of another share: a relay whose
// membership changed); it would hold them before this claim locks them again, so this
// claim's lock fails or finds fewer rows, and the claim is lost rather than shared.
func (c *claim) Checkpoint(ctx context.Context, o outbox.Outcome) error {
	if c.done {
		return fmt.Errorf("checkpointing claim: %w", cmp.Or(c.lost, dialect.ErrClaimLost))
	}
	if len(o.Retry)+len(o.Dead) > 0 {
		return errors.New("checkpointing claim: only published messages can be checkpointed")
	}
	if err := c.check(o); err != nil {
		return fmt.Errorf("checkpointing claim: %w", err)
	}
	if len(o.Published) == 0 {
		return nil
	}
	now := make(map[int64]bool, len(o.Published))
	tids := make([]pgtype.TID, 0, len(o.Published))
	for _, seq := range o.Published {
		if c.recorded[seq] || now[seq] {
			return fmt.Errorf("checkpointing claim: message %d is checkpointed already", seq)
		}
		now[seq] = true
		tids = append(tids, c.held[seq])
	}
	rest := make([]pgtype.TID, 0, len(c.held)-len(c.recorded)-len(now))
	for seq, tid := range c.held {
		if !c.recorded[seq] && !now[seq] {
			rest = append(rest, tid)
		}
	}
	b := &pgx.Batch{}
	if c.retain {
		b.Queue(c.s.q.markPublished, tids)
	} else {
		b.Queue(c.s.q.del, tids)
	}
	if n := countIn(o.Duplicates, now); n > 0 {
		b.Queue(c.s.q.duplicates, n)
	}
	commit := b.Len()
	b.Queue("COMMIT")
	b.Queue("BEGIN")
	if c.s.async {
		b.Queue("SET LOCAL synchronous_commit = off")
	}
	execs := b.Len()
	b.Queue(c.s.q.relock, rest)
	br := c.conn.SendBatch(ctx, b)
	var (
		committed bool
		err       error
	)
	for i := range execs {
		var tag pgconn.CommandTag
		if tag, err = br.Exec(); err != nil {
			break
		}
		if i == commit {
			if tag.String() != "COMMIT" {
				err = pgx.ErrTxCommitRollback
				break
			}
			committed = true
		}
	}
	if err == nil {
		var n int64
		if err = br.QueryRow().Scan(&n); err == nil && n != int64(len(rest)) {
			err = fmt.Errorf("%d of the claim's %d other rows changed meanwhile: %w", int64(len(rest))-n, len(rest), dialect.ErrClaimLost)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if committed {
		if c.recorded == nil {
			c.recorded = make(map[int64]bool, len(c.held))
		}
		for seq := range now {
			c.recorded[seq] = true
		}
		c.dirty = false
	}
	if err != nil {
		c.lost = err
		c.rollback()
		return fmt.Errorf("checkpointing claim: %w", err)
	}
	return nil
}

// countIn counts the seqs in set.
func countIn(seqs []int64, set map[int64]bool) int {
	n := 0
	for _, seq := range seqs {
		if set[seq] {
			n++
		}
	}
	return n
}

// Finish implements dialect.Claim: the updates and COMMIT in one round trip.
func (c *claim) Finish(ctx context.Context, o outbox.Outcome) error {
	if err := c.check(o); err != nil {
		c.rollback()
		return fmt.Errorf("finishing claim: %w", err)
	}
	o = dialect.Unrecorded(o, c.recorded)
	if c.lost != nil {
		if len(o.Published)+len(o.Retry)+len(o.Dead) > 0 {
			return fmt.Errorf("finishing claim: %w (%w)", dialect.ErrClaimLost, c.lost)
		}
		return nil
	}
	if c.done {
		return nil
	}
	if len(o.Published)+len(o.Retry)+len(o.Dead) == 0 && !c.dirty {
		c.rollback()
		return nil
	}
	b := &pgx.Batch{}
	if len(o.Published) > 0 {
		tids := make([]pgtype.TID, len(o.Published))
		for i, seq := range o.Published {
			tids[i] = c.held[seq]
		}
		if c.retain {
			b.Queue(c.s.q.markPublished, tids)
		} else {
			b.Queue(c.s.q.del, tids)
		}
	}
	if len(o.Retry) > 0 {
		ids := make([]int64, len(o.Retry))
		delays := make([]int64, len(o.Retry))
		errs := make([]string, len(o.Retry))
		na := make([]bool, len(o.Retry))
		for i, r := range o.Retry {
			ids[i], delays[i], errs[i], na[i] = r.Seq, r.Delay.Microseconds(), r.Error, r.NotAttempted
		}
		b.Queue(c.s.q.retry, ids, delays, errs, na)
	}
	if len(o.Dead) > 0 {
		ids := make([]int64, len(o.Dead))
		errs := make([]string, len(o.Dead))
		for i, d := range o.Dead {
			ids[i], errs[i] = d.Seq, d.Error
		}
		b.Queue(c.s.q.toDead, ids, errs)
	}
	if len(o.Duplicates) > 0 {
		b.Queue(c.s.q.duplicates, len(o.Duplicates))
	}
	b.Queue("COMMIT")
	br := c.conn.SendBatch(ctx, b)
	var (
		tag pgconn.CommandTag
		err error
	)
	for range b.Len() {
		if tag, err = br.Exec(); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err == nil && tag.String() == "ROLLBACK" {
		err = pgx.ErrTxCommitRollback
	}
	c.done = true
	// After a failed update the server skipped COMMIT: the transaction is still open
	// (aborted), and rolling it back releases the rows unchanged.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	c.end(rctx, "ROLLBACK")
	if err != nil {
		return fmt.Errorf("finishing claim: %w", err)
	}
	return nil
}

// Heartbeat implements dialect.Claimer.
func (s *Store) Heartbeat(ctx context.Context, relayID, group string, ttl time.Duration) (dialect.Membership, error) {
	b := &pgx.Batch{}
	b.Queue(s.q.heartbeat, relayID, group)
	b.Queue(s.q.expire, ttl.Microseconds())
	var ids []string
	b.Queue(s.q.members, group).Query(func(rows pgx.Rows) error {
		var err error
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return dialect.Membership{}, fmt.Errorf("heartbeat: %w", err)
	}
	m, err := dialect.MembershipOf(ids, relayID)
	if err != nil {
		return m, fmt.Errorf("heartbeat: %w", err)
	}
	return m, nil
}

// Leave implements dialect.Claimer.
func (s *Store) Leave(ctx context.Context, relayID string) error {
	if _, err := s.pool.Exec(ctx, s.q.leave, relayID); err != nil {
		return fmt.Errorf("leaving: %w", err)
	}
	return nil
}

// DeletePublished implements dialect.Claimer.
func (s *Store) DeletePublished(ctx context.Context, retention time.Duration, limit int) (int64, error) {
	tag, err := s.pool.Exec(ctx, s.q.deletePublished, retention.Microseconds(), limit)
	if err != nil {
		return 0, fmt.Errorf("deleting published rows: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Stats implements dialect.Admin.
func (s *Store) Stats(ctx context.Context) (dialect.Stats, error) {
	var (
		st     dialect.Stats
		oldest float64
	)
	err := s.pool.QueryRow(ctx, s.q.stats).Scan(&st.Pending, &st.Ready, &st.Retrying, &oldest, &st.DeadLetters, &st.Relays, &st.BrokerDuplicates)
	if err != nil {
		return st, fmt.Errorf("reading stats: %w", err)
	}
	rows, err := s.pool.Query(ctx, s.q.topics)
	if err == nil {
		st.Topics, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (dialect.TopicErrors, error) {
			var te dialect.TopicErrors
			err := r.Scan(&te.Topic, &te.Failing, &te.LastError)
			return te, err
		})
	}
	if err != nil {
		return st, fmt.Errorf("reading stats: %w", err)
	}
	st.OldestPending = time.Duration(oldest * float64(time.Second))
	return st, nil
}

// DeadLetters implements dialect.Admin.
// DeadLetterIDs implements dialect.DeadLetterIDLister.
func (s *Store) DeadLetterIDs(ctx context.Context, afterID int64, limit int) ([]int64, error) {
	rows, err := s.pool.Query(ctx, s.q.deadIDs, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("listing dead letter ids: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("listing dead letter ids: %w", err)
	}
	return ids, nil
}

func (s *Store) DeadLetters(ctx context.Context, afterID int64, limit int) ([]dialect.DeadLetter, error) {
	rows, err := s.pool.Query(ctx, s.q.deadList, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("listing dead letters: %w", err)
	}
	defer rows.Close()
	var out []dialect.DeadLetter
	for rows.Next() {
		var (
			d               dialect.DeadLetter
			key             *string
			headers         []byte
			created, failed pgtype.Timestamptz
		)
		r := &d.Record
		if err := rows.Scan(&d.ID, &r.Seq, &r.ID, &r.Topic, &key, &r.Type, &r.Payload, &headers, &created, &r.Attempts, &d.LastError, &failed); err != nil {
			return nil, fmt.Errorf("listing dead letters: %w", err)
		}
		if key != nil {
			r.Key = *key
		}
		// A row dead-lettered because it was unreadable still lists, with what could be
		// read; its error says why.
		r.CreatedAt, d.FailedAt = finite(created), finite(failed)
		r.Headers, _ = dialect.DecodeHeaders(headers)
		out = append(out, d)
	}
	return out, rows.Err()
}

// RetryDeadLetters implements dialect.Admin.
func (s *Store) RetryDeadLetters(ctx context.Context, ids []int64) (int64, error) {
	tag, err := s.pool.Exec(ctx, s.q.deadRetry, ids)
	if err != nil {
		return 0, fmt.Errorf("retrying dead letters: %w", err)
	}
	return tag.RowsAffected(), nil
}

// PurgeDeadLetters implements dialect.Admin.
func (s *Store) PurgeDeadLetters(ctx context.Context, ids []int64) (int64, error) {
	tag, err := s.pool.Exec(ctx, s.q.deadPurge, ids)
	if err != nil {
		return 0, fmt.Errorf("purging dead letters: %w", err)
	}
	return tag.RowsAffected(), nil
}
