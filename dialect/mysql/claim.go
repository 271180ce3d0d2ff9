package mysql

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
)

// maxSkipKeys bounds the SkipKeys hint sent with a claim (one placeholder each; a statement
// takes at most 65,535).
const maxSkipKeys = 10000

// maxExcludePlaceholders is how many excluded topics (ClaimRequest.ExcludeTopics) a claim
// binds one placeholder each; more go as one JSON array read by JSON_TABLE.
const maxExcludePlaceholders = 1000

// candidate is a row the locking scan took: what choosing needs, without the payload.
type candidate struct {
	id   int64
	key  string // "" for none
	size int
}

// badRow is a claimed row that cannot be decoded.
type badRow struct {
	seq    int64
	reason string
}

// Claim implements dialect.Claimer.
//
// The claim is a READ COMMITTED transaction held open until Finish. It runs in three steps:
//  1. a locking scan (SELECT ... FOR UPDATE SKIP LOCKED) of the ready rows of the request's
//     share, in id order, reading ids, keys and payload sizes only; the byte budget keeps a
//     prefix of them;
//  2. the per-key order check, which drops keys with an earlier unpublished row outside the
//     claim;
//  3. a read of the rows kept, payloads included.
//
// Rows the scan locked but the claim does not keep (past the budget, or of a blocked key)
// stay locked until the claim ends, and are then released untouched.
func (s *Store) Claim(ctx context.Context, req dialect.ClaimRequest) (dialect.Claim, error) {
	if req.Limit <= 0 {
		return nil, errors.New("claim: limit must be positive")
	}
	// The transaction outlives this call (it is the claim) but not the claiming: ctx cancels
	// it only until Claim returns. database/sql would otherwise roll it back whenever the
	// caller's context ends, even after Claim returned and while the batch is published.
	txCtx, cancelTx := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancelTx)
	tx, err := s.db.BeginTx(txCtx, readCommitted)
	if err != nil {
		stop()
		cancelTx()
		return nil, fmt.Errorf("claiming: beginning transaction: %w", err)
	}
	c := &claim{s: s, tx: tx, cancel: cancelTx, retain: req.Retain}
	if err := c.take(ctx, req); err != nil {
		stop()
		c.rollback()
		return nil, fmt.Errorf("claiming: %w", err)
	}
	if !stop() {
		// ctx ended while claiming: the transaction is being rolled back.
		c.rollback()
		return nil, fmt.Errorf("claiming: %w", cmp.Or(context.Cause(ctx), context.Canceled))
	}
	if len(c.recs) == 0 && !c.dirty {
		c.rollback()
	}
	return c, nil
}

// take runs the claim's statements in c.tx and fills c.
func (c *claim) take(ctx context.Context, req dialect.ClaimRequest) error {
	s := c.s
	cands, err := s.scan(ctx, c.tx, req)
	if err != nil {
		return err
	}
	if len(cands) == 0 {
		return nil
	}
	blocked, err := s.checkOrder(ctx, c.tx, cands)
	if err != nil {
		return fmt.Errorf("checking key order: %w", err)
	}
	if len(blocked) > 0 {
		kept := cands[:0]
		for _, cd := range cands {
			if _, b := blocked[cd.key]; !b || cd.key == "" {
				kept = append(kept, cd)
			}
		}
		cands = kept
		keys := make([]string, 0, len(blocked))
		for k := range blocked {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			c.blocked = append(c.blocked, dialect.BlockedKey{Key: k, Until: blocked[k]})
		}
	}
	if len(cands) == 0 {
		return nil
	}
	recs, bad, err := s.fetch(ctx, c.tx, cands)
	if err != nil {
		return fmt.Errorf("reading claimed rows: %w", err)
	}
	if len(bad) > 0 {
		// Rows no relay can read (written by hand or by another language) must not block
		// every later claim: they go to the dead letters with the reason, in this claim's
		// transaction (committed by Finish, whatever the outcome). The order check counted
		// them as claimed, so the later rows of their keys are in the claim and follow them.
		if err := c.deadLetter(ctx, bad); err != nil {
			return fmt.Errorf("dead-lettering unreadable rows: %w", err)
		}
	}
	c.recs = recs
	c.held = make(map[int64]struct{}, len(recs))
	for i := range recs {
		c.held[recs[i].Seq] = struct{}{}
	}
	return nil
}

// scan locks the ready rows of the request's share in id order and returns those within the
// byte budget.
func (s *Store) scan(ctx context.Context, tx *sql.Tx, req dialect.ClaimRequest) ([]candidate, error) {
	var (
		b    strings.Builder
		args []any
	)
	// Claims scan the primary key, never a secondary index: InnoDB keeps the locks that a
	// SKIP LOCKED scan of a secondary index took on rows failing the WHERE (another relay's
	// partition, a row in backoff), so claims would starve each other. On the primary key,
	// READ COMMITTED releases them as soon as the row is found not to match.
	b.WriteString("SELECT id, message_id, `key`, LENGTH(payload) FROM ")
	b.WriteString(s.names.Table)
	b.WriteString(" FORCE INDEX (PRIMARY) WHERE published_at IS NULL AND available_at <= UTC_TIMESTAMP(6)")
	if req.Retain {
		// Published rows are kept: start at the oldest unpublished one (found in the pending
		// index without locks) rather than scan the whole retention window.
		var from sql.NullInt64
		if err := tx.QueryRowContext(ctx, s.q.firstPending).Scan(&from); err != nil {
			return nil, err
		}
		if !from.Valid {
			return nil, nil
		}
		b.WriteString(" AND id >= " + strconv.FormatInt(from.Int64, 10))
	}
	// The two-level split of dialect.ClaimRequest: h mod Partitions == Partition, then
	// (h div Partitions) mod Slots == Slot. Integers, so written as literals.
	parts, slots := max(req.Partitions, 1), max(req.Slots, 1)
	if parts > 1 {
		fmt.Fprintf(&b, " AND %s MOD %d = %d", keyHash, parts, req.Partition)
	}
	if slots > 1 {
		fmt.Fprintf(&b, " AND (%s DIV %d) MOD %d = %d", keyHash, parts, slots, req.Slot)
	}
	if skip := req.SkipKeys[:min(len(req.SkipKeys), maxSkipKeys)]; len(skip) > 0 {
		b.WriteString(" AND (`key` IS NULL OR `key` NOT IN (" + placeholders(len(skip)) + "))")
		for _, k := range skip {
			args = append(args, k)
		}
	}
	if len(req.Topics) > 0 {
		// Compared as bytes: utf8mb4_bin alone would match "t" with "t ".
		b.WriteString(" AND CAST(topic AS BINARY) IN (" + placeholders(len(req.Topics)) + ")")
		for _, t := range req.Topics {
			args = append(args, t)
		}
	}
	switch n := len(req.ExcludeTopics); {
	case n > maxExcludePlaceholders:
		// Many (topics routed to a paused sink, one per tenant...): one JSON argument, so
		// that the statement stays within its 65,535 placeholders.
		list, err := json.Marshal(req.ExcludeTopics)
		if err != nil {
			return nil, err
		}
		b.WriteString(" AND CAST(topic AS BINARY) NOT IN (SELECT CAST(x.t AS BINARY) FROM JSON_TABLE(?, '$[*]'" +
			" COLUMNS (t VARCHAR(255) CHARACTER SET utf8mb4 PATH '$')) x WHERE x.t IS NOT NULL)")
		args = append(args, string(list))
	case n > 0:
		// Paused topics: their rows wait, and the order check holds back the later rows of
		// their keys.
		b.WriteString(" AND CAST(topic AS BINARY) NOT IN (" + placeholders(n) + ")")
		for _, t := range req.ExcludeTopics {
			args = append(args, t)
		}
	}
	b.WriteString(" ORDER BY id LIMIT " + strconv.Itoa(req.Limit) + " FOR UPDATE SKIP LOCKED")
	rows, err := tx.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		cands []candidate
		bytes int
		full  bool
	)
	for rows.Next() {
		var (
			cd  candidate
			mid string
			key sql.NullString
		)
		if err := rows.Scan(&cd.id, &mid, &key, &cd.size); err != nil {
			return nil, err
		}
		if full || (req.MaxBytes > 0 && len(cands) > 0 && bytes+cd.size > req.MaxBytes) {
			full = true // the rest stays locked until the claim ends, untouched
			continue
		}
		// An unreadable row is found by fetch, after the order check has counted it as
		// claimed: its key's later rows can then go in this claim.
		cd.key = key.String
		bytes += cd.size
		cands = append(cands, cd)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return cands, nil
}

// checkOrder returns the keys whose claimed rows are not a complete prefix of the key's
// unpublished rows, with the latest available_at among those rows.
//
// It is a plain read: under READ COMMITTED it sees the latest committed state, so a row
// another claim holds (locked, still unpublished) counts, and a row another claim has
// published meanwhile does not. A row of the key whose transaction has not committed yet is
// invisible, as it is to the scan: that is the overlapping-transactions case of the order
// guarantee, the same in every dialect.
func (s *Store) checkOrder(ctx context.Context, tx *sql.Tx, cands []candidate) (map[string]time.Time, error) {
	type agg struct {
		maxID, n int64
	}
	byKey := make(map[string]*agg)
	for _, cd := range cands {
		if cd.key == "" {
			continue
		}
		a := byKey[cd.key]
		if a == nil {
			a = &agg{}
			byKey[cd.key] = a
		}
		a.maxID = max(a.maxID, cd.id)
		a.n++
	}
	if len(byKey) == 0 {
		return nil, nil
	}
	keyOf := make(map[int64]string, len(byKey))
	ids := make([]int64, 0, len(byKey))
	for k, a := range byKey {
		keyOf[a.maxID] = k
		ids = append(ids, a.maxID)
	}
	rows, err := tx.QueryContext(ctx, s.q.orderCheck+idList(ids)+") GROUP BY c.id")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out map[string]time.Time
	block := func(k string, until time.Time) {
		if out == nil {
			out = make(map[string]time.Time)
		}
		out[k] = until
	}
	seen := make(map[int64]bool, len(ids))
	for rows.Next() {
		var (
			id, cnt int64
			untilUS sql.NullInt64
		)
		if err := rows.Scan(&id, &cnt, &untilUS); err != nil {
			return nil, err
		}
		seen[id] = true
		k, ok := keyOf[id]
		if !ok {
			continue
		}
		if cnt != byKey[k].n {
			var until time.Time
			if untilUS.Valid {
				until = fromMicros(untilUS.Int64)
			}
			block(k, until)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, id := range ids {
		if !seen[id] {
			// The claim's own row did not count itself: nothing is certain about the key.
			block(keyOf[id], time.Time{})
		}
	}
	return out, nil
}

// fetch reads the kept rows in full. They are locked by the claim, so they are as scanned.
func (s *Store) fetch(ctx context.Context, tx *sql.Tx, cands []candidate) ([]outbox.Record, []badRow, error) {
	ids := make([]int64, len(cands))
	for i, cd := range cands {
		ids[i] = cd.id
	}
	rows, err := tx.QueryContext(ctx, "SELECT "+s.q.cols+" FROM "+s.names.Table+" WHERE id IN ("+idList(ids)+") ORDER BY id")
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	recs := make([]outbox.Record, 0, len(cands))
	var bad []badRow
	for rows.Next() {
		r, err := scanRecord(rows)
		if errors.Is(err, dialect.ErrUnreadable) {
			bad = append(bad, badRow{seq: r.Seq, reason: err.Error()})
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if len(recs)+len(bad) != len(cands) {
		// Only a session ignoring row locks (none does) could change locked rows.
		s.logger.WarnContext(ctx, "mysql outbox: claimed rows changed before they were read",
			slog.String("table", s.table.String()), slog.Int("claimed", len(cands)), slog.Int("read", len(recs)+len(bad)))
	}
	return recs, bad, nil
}

// scanRecord reads a row of the cols query. A row that does not decode gives a
// dialect.ColumnError, and a record holding what could be read.
func scanRecord(rows *sql.Rows) (outbox.Record, error) {
	var raw dialect.RawRow
	if err := rows.Scan(&raw.Seq, &raw.MessageID, &raw.Topic, &raw.Key, &raw.Type, &raw.Payload, &raw.Headers, &raw.CreatedAt, &raw.Attempts); err != nil {
		return outbox.Record{}, err
	}
	return dialect.DecodeRow(raw)
}

type claim struct {
	s       *Store
	tx      *sql.Tx
	cancel  context.CancelFunc // ends the transaction's context
	retain  bool
	recs    []outbox.Record
	held    map[int64]struct{}
	blocked []dialect.BlockedKey
	dirty   bool // the claim already changed rows: commit even an empty outcome
	done    bool
	// recorded are the published messages a checkpoint committed; lost is why the claim
	// holds nothing any more after a failed checkpoint.
	recorded map[int64]bool
	lost     error
}

func (c *claim) Records() []outbox.Record      { return c.recs }
func (c *claim) Blocked() []dialect.BlockedKey { return c.blocked }

func (c *claim) rollback() {
	if c.done {
		return
	}
	c.done = true
	// A rollback on a broken connection fails; the server has then ended the transaction.
	_ = c.tx.Rollback()
	c.cancel()
}

func (c *claim) deadLetter(ctx context.Context, bad []badRow) error {
	dead := make([]outbox.Dead, len(bad))
	for i, b := range bad {
		dead[i] = outbox.Dead{Seq: b.seq, Error: b.reason}
	}
	if err := c.s.toDead(ctx, c.tx, dead); err != nil {
		return err
	}
	c.dirty = true
	return nil
}

// check refuses an outcome naming a row this claim does not hold for publishing: rows the
// order check left out are locked by the claim but belong to later claims.
func (c *claim) check(o outbox.Outcome) error {
	return o.CheckHeld(func(seq int64) bool { _, ok := c.held[seq]; return ok })
}

var _ dialect.Checkpointer = (*claim)(nil)

// Checkpoint implements dialect.Checkpointer: the published rows' statements and commit, then
// a new transaction that locks the claim's other rows again with NOWAIT. Between the commit
// and the lock another claim could take them (a few round trips' time, and only a claim of
// another share: a relay whose membership changed); this claim's lock then fails, or finds
// fewer unpublished rows, and the claim is lost rather than shared.
func (c *claim) Checkpoint(ctx context.Context, o outbox.Outcome) error {
	if c.done {
		return fmt.Errorf("checkpointing claim: %w", cmp.Or(c.lost, dialect.ErrClaimLost))
	}
	now, err := dialect.NewlyCheckpointed(o, c.recorded)
	if err != nil {
		return err
	}
	if err := c.check(o); err != nil {
		return fmt.Errorf("checkpointing claim: %w", err)
	}
	if len(now) == 0 {
		return nil
	}
	part := outbox.Outcome{Published: o.Published}
	for _, seq := range o.Duplicates {
		if now[seq] {
			part.Duplicates = append(part.Duplicates, seq)
		}
	}
	lose := func(err error) error {
		c.lost = err
		c.rollback()
		return fmt.Errorf("checkpointing claim: %w", err)
	}
	if err := c.apply(ctx, part); err != nil {
		return lose(err)
	}
	c.done = true // the transaction ends here, whatever Commit says
	err = c.tx.Commit()
	c.cancel()
	if err != nil {
		return lose(fmt.Errorf("committing: %w", err))
	}
	if c.recorded == nil {
		c.recorded = make(map[int64]bool, len(c.held))
	}
	for seq := range now {
		c.recorded[seq] = true
	}
	c.dirty = false
	rest := make([]int64, 0, len(c.held)-len(c.recorded))
	for seq := range c.held {
		if !c.recorded[seq] {
			rest = append(rest, seq)
		}
	}
	slices.Sort(rest)
	txCtx, cancelTx := context.WithCancel(context.WithoutCancel(ctx))
	tx, err := c.s.db.BeginTx(txCtx, readCommitted)
	if err != nil {
		cancelTx()
		c.lost = err
		return fmt.Errorf("checkpointing claim: beginning transaction: %w", err)
	}
	c.tx, c.cancel, c.done = tx, cancelTx, false
	for start := 0; start < len(rest); start += chunk {
		ids := rest[start:min(start+chunk, len(rest))]
		var n int
		err := tx.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT t.id FROM "+byID(ids, c.s.names.Table)+
			" WHERE t.published_at IS NULL FOR UPDATE NOWAIT) AS l").Scan(&n)
		if err == nil && n != len(ids) {
			err = fmt.Errorf("%d of the claim's other rows changed meanwhile: %w", len(ids)-n, dialect.ErrClaimLost)
		}
		if err != nil {
			return lose(fmt.Errorf("locking the claim's other rows again: %w", err))
		}
	}
	return nil
}

// Finish implements dialect.Claim: the outcome's statements, then commit.
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
	if err := c.apply(ctx, o); err != nil {
		c.rollback()
		return fmt.Errorf("finishing claim: %w", err)
	}
	c.done = true
	defer c.cancel()
	if err := c.tx.Commit(); err != nil {
		return fmt.Errorf("finishing claim: committing: %w", err)
	}
	return nil
}

func (c *claim) apply(ctx context.Context, o outbox.Outcome) error {
	s, tx := c.s, c.tx
	if c.retain {
		for start := 0; start < len(o.Published); start += chunk {
			part := o.Published[start:min(start+chunk, len(o.Published))]
			if _, err := tx.ExecContext(ctx, "UPDATE "+byID(part, s.names.Table)+" SET t.published_at = UTC_TIMESTAMP(6)"); err != nil {
				return fmt.Errorf("marking published: %w", err)
			}
		}
	} else if _, err := deleteByID(ctx, tx, s.names.Table, o.Published, ""); err != nil {
		return fmt.Errorf("removing published: %w", err)
	}
	for start := 0; start < len(o.Retry); start += chunk {
		part := o.Retry[start:min(start+chunk, len(o.Retry))]
		if err := s.retry(ctx, tx, part); err != nil {
			return fmt.Errorf("scheduling retries: %w", err)
		}
	}
	if len(o.Dead) > 0 {
		if err := s.toDead(ctx, tx, o.Dead); err != nil {
			return fmt.Errorf("dead-lettering: %w", err)
		}
	}
	if len(o.Duplicates) > 0 {
		if _, err := tx.ExecContext(ctx, s.q.duplicates, len(o.Duplicates)); err != nil {
			return fmt.Errorf("counting broker duplicates: %w", err)
		}
	}
	return nil
}

// retry schedules retries, each with its own delay and error, in one statement: delays are
// integers (literals), errors parameters.
func (s *Store) retry(ctx context.Context, tx *sql.Tx, rs []outbox.Retry) error {
	var delays, errs, adds strings.Builder
	ids := make([]int64, len(rs))
	args := make([]any, len(rs))
	for i, r := range rs {
		ids[i] = r.Seq
		args[i] = storable(r.Error)
		fmt.Fprintf(&delays, " WHEN %d THEN %d", r.Seq, max(r.Delay, 0).Microseconds())
		fmt.Fprintf(&errs, " WHEN %d THEN ?", r.Seq)
		if r.NotAttempted {
			fmt.Fprintf(&adds, " WHEN %d THEN 0", r.Seq)
		}
	}
	add := "1"
	if adds.Len() > 0 {
		// Not attempted (the sink was unavailable): attempts stay.
		add = "CASE t.id" + adds.String() + " ELSE 1 END"
	}
	q := "UPDATE " + byID(ids, s.names.Table) + " SET t.attempts = t.attempts + " + add + ", t.last_error_at = UTC_TIMESTAMP(6)," +
		" t.available_at = UTC_TIMESTAMP(6) + INTERVAL (CASE t.id" + delays.String() + " END) MICROSECOND," +
		" t.last_error = CASE t.id" + errs.String() + " END"
	_, err := tx.ExecContext(ctx, q, args...)
	return err
}

// toDead moves rows to the dead-letter table, in id order so that dead letters of one key
// keep their order: INSERT ... SELECT, then DELETE. The rows are copied by SQL, so they need
// not decode. If a chunk cannot be copied (a value the dead-letter table refuses), its rows
// are copied one by one, and a row that still fails is dead-lettered with placeholders for
// the columns that may not fit, their values in the reason.
func (s *Store) toDead(ctx context.Context, tx *sql.Tx, dead []outbox.Dead) error {
	dead = slices.SortedFunc(slices.Values(dead), func(a, b outbox.Dead) int { return cmp.Compare(a.Seq, b.Seq) })
	for start := 0; start < len(dead); start += chunk {
		part := dead[start:min(start+chunk, len(dead))]
		err := savepoint(ctx, tx, func() error { return s.copyDead(ctx, tx, part) })
		if err != nil {
			for _, d := range part {
				if err := savepoint(ctx, tx, func() error { return s.copyDead(ctx, tx, []outbox.Dead{d}) }); err != nil {
					if err := s.salvageDead(ctx, tx, d, err); err != nil {
						return err
					}
				}
			}
		}
		ids := make([]int64, len(part))
		for i, d := range part {
			ids[i] = d.Seq
		}
		if _, err := deleteByID(ctx, tx, s.names.Table, ids, ""); err != nil {
			return err
		}
	}
	return nil
}

// savepoint runs fn inside a savepoint, rolled back to when fn fails.
func savepoint(ctx context.Context, tx *sql.Tx, fn func() error) error {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT dead_letter"); err != nil {
		return err
	}
	if err := fn(); err != nil {
		if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT dead_letter"); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	_, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT dead_letter")
	return err
}

func (s *Store) copyDead(ctx context.Context, tx *sql.Tx, part []outbox.Dead) error {
	var errs strings.Builder
	ids := make([]int64, len(part))
	args := make([]any, len(part))
	for i, d := range part {
		ids[i] = d.Seq
		args[i] = storable(d.Error)
		fmt.Fprintf(&errs, " WHEN %d THEN ?", d.Seq)
	}
	// attempts + 1 in BIGINT, capped: an INT column at its maximum must not overflow.
	_, err := tx.ExecContext(ctx, "INSERT INTO "+s.names.Dead+
		" (original_id, message_id, topic, `key`, type, payload, headers, created_at, attempts, last_error, failed_at)"+
		" SELECT id, message_id, topic, `key`, type, payload, headers, created_at, LEAST(CAST(attempts AS SIGNED) + 1, 2147483647), CASE id"+errs.String()+" END, UTC_TIMESTAMP(6)"+
		" FROM "+s.names.Table+" WHERE id IN ("+idList(ids)+") ORDER BY id", args...)
	return err
}

// salvageDead writes the dead letter of a row that cannot be copied whole: message_id,
// headers, created_at and attempts get placeholders, their values go into the reason.
func (s *Store) salvageDead(ctx context.Context, tx *sql.Tx, d outbox.Dead, copyErr error) error {
	var vals [4]sql.NullString
	if err := tx.QueryRowContext(ctx, "SELECT CAST(message_id AS CHAR), CAST(headers AS CHAR), CAST(created_at AS CHAR), CAST(attempts AS CHAR) FROM "+
		s.names.Table+" WHERE id = ?", d.Seq).Scan(&vals[0], &vals[1], &vals[2], &vals[3]); err != nil {
		return errors.Join(copyErr, err)
	}
	texts := make([]string, len(vals))
	for i, v := range vals {
		texts[i] = cmp.Or(v.String, "NULL")
	}
	reason := dialect.SalvageReason(d.Error, copyErr, []string{"message_id", "headers", "created_at", "attempts"}, texts)
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+s.names.Dead+
		" (original_id, message_id, topic, `key`, type, payload, headers, created_at, attempts, last_error, failed_at)"+
		" SELECT id, ?, topic, `key`, type, payload, '{}', UTC_TIMESTAMP(6), 0, ?, UTC_TIMESTAMP(6) FROM "+s.names.Table+" WHERE id = ?",
		uuid.Nil.String(), storable(reason), d.Seq); err != nil {
		return errors.Join(copyErr, err)
	}
	return nil
}
