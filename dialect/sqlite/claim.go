package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
)

// holds are the messages held by the Store's open claims, and how many of them each key has.
// A claim holds a prefix of its keys' unpublished messages, so any other message of a held
// key comes later and must wait.
type holds struct {
	ids  map[int64]struct{}
	keys map[string]int
}

func (h *holds) add(cs []candidate) {
	for _, c := range cs {
		h.ids[c.id] = struct{}{}
		if c.key != "" {
			h.keys[c.key]++
		}
	}
}

func (h *holds) remove(cs []candidate) {
	for _, c := range cs {
		delete(h.ids, c.id)
		if c.key != "" {
			if h.keys[c.key]--; h.keys[c.key] <= 0 {
				delete(h.keys, c.key)
			}
		}
	}
}

// partitionOf places a message in one of parts partitions by FNV-1a of its key (or its
// message_id when it has no key), so all messages of a key land in the same partition.
func keyHash(key, messageID string) uint32 {
	h := fnv.New32a()
	if key != "" {
		h.Write([]byte(key))
	} else {
		h.Write([]byte(messageID))
	}
	return h.Sum32()
}

// inShare reports whether a message hashing to h is in the request's partition and slot:
// h mod Partitions == Partition, then (h / Partitions) mod Slots == Slot.
func inShare(h uint32, req dialect.ClaimRequest) bool {
	parts, slots := uint32(max(req.Partitions, 1)), uint32(max(req.Slots, 1))
	return h%parts == uint32(req.Partition) && (h/parts)%slots == uint32(req.Slot)
}

var errLimit = errors.New("claim: limit must be positive")

// candidate is a row the scan chose; its columns are fetched afterwards.
type candidate struct {
	id  int64
	key string
}

// Claim implements dialect.Claimer.
//
// SQLite has a single writer, so a claim does not hold a transaction (that would stop every
// producer while the batch is being published): the Store records the claimed messages in
// memory, and other claims skip them and every later message of their keys. Nothing is
// written until Finish, so a relay that dies simply forgets its claims.
func (s *Store) Claim(ctx context.Context, req dialect.ClaimRequest) (dialect.Claim, error) {
	if req.Limit <= 0 {
		return nil, errLimit
	}
	skip := "[]"
	if len(req.SkipKeys) > 0 {
		b, err := json.Marshal(req.SkipKeys)
		if err != nil {
			return nil, fmt.Errorf("claiming: encoding skip keys: %w", err)
		}
		skip = string(b)
	}
	chosen, blocked, err := s.choose(ctx, req, skip)
	if err != nil {
		return nil, fmt.Errorf("claiming: %w", err)
	}
	c := &claim{s: s, retain: req.Retain, held: chosen, blocked: blocked}
	if len(chosen) == 0 {
		c.done = true
		return c, nil
	}
	// The rows are held now: no other claim or Finish changes them, so they are read
	// without the lock.
	recs, bad, err := s.fetch(ctx, chosen)
	if err != nil {
		c.release()
		return nil, fmt.Errorf("claiming: %w", err)
	}
	if len(recs)+len(bad) != len(chosen) {
		// Only another process can have changed held rows.
		s.logger.WarnContext(ctx, "sqlite outbox: claimed messages vanished before they were read; is another relay using this database file?",
			slog.String("table", s.table.Name), slog.Int("claimed", len(chosen)), slog.Int("read", len(recs)))
	}
	// Unreadable rows stay held (a later row of their key can be in this claim: it follows
	// them, and they are dead-lettered when the claim finishes, whatever its outcome).
	c.recs, c.bad = recs, bad
	return c, nil
}

// choose scans the ready messages in id order and holds up to req.Limit of them whose keys
// are not blocked. It returns the chosen rows and the keys it found blocked.
func (s *Store) choose(ctx context.Context, req dialect.ClaimRequest, skip string) ([]candidate, []dialect.BlockedKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows, err := s.db.QueryContext(ctx, s.q.scan, time.Now().UnixMicro(), skip)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var (
		chosen     []candidate
		blocked    []dialect.BlockedKey
		blockedSet = map[string]struct{}{}
		bytes      int
		topicSet   map[string]struct{}
	)
	if len(req.Topics) > 0 {
		topicSet = make(map[string]struct{}, len(req.Topics))
		for _, t := range req.Topics {
			topicSet[t] = struct{}{}
		}
	}
	var excluded map[string]struct{}
	if len(req.ExcludeTopics) > 0 {
		excluded = make(map[string]struct{}, len(req.ExcludeTopics))
		for _, t := range req.ExcludeTopics {
			excluded[t] = struct{}{}
		}
	}
	for len(chosen) < req.Limit && rows.Next() {
		var (
			id     int64
			key    sql.NullString
			mid    string
			topic  string
			size   int
			behind bool
		)
		if err := rows.Scan(&id, &key, &mid, &topic, &size, &behind); err != nil {
			return nil, nil, err
		}
		if !inShare(keyHash(key.String, mid), req) {
			continue
		}
		if _, ok := s.held.ids[id]; ok {
			continue // in another claim; any later message of its key is blocked below
		}
		_, paused := excluded[topic]
		_, ours := topicSet[topic]
		if paused || (topicSet != nil && !ours) {
			// Not ours to publish (or paused), but it still comes first for its key.
			if k := key.String; key.Valid && k != "" {
				if _, seen := blockedSet[k]; !seen {
					blockedSet[k] = struct{}{}
					blocked = append(blocked, dialect.BlockedKey{Key: k})
				}
			}
			continue
		}
		if k := key.String; key.Valid && k != "" {
			if _, ok := blockedSet[k]; ok {
				continue
			}
			if behind || s.held.keys[k] > 0 {
				blockedSet[k] = struct{}{}
				blocked = append(blocked, dialect.BlockedKey{Key: k})
				continue
			}
		}
		if req.MaxBytes > 0 && len(chosen) > 0 && bytes+size > req.MaxBytes {
			break
		}
		bytes += size
		chosen = append(chosen, candidate{id: id, key: key.String})
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	s.held.add(chosen)
	return chosen, blocked, nil
}

// fetch reads the chosen rows. Rows that do not decode are returned apart, with what could
// be read of them, to be dead-lettered when the claim finishes.
func (s *Store) fetch(ctx context.Context, chosen []candidate) ([]outbox.Record, []badRow, error) {
	ids := make([]int64, len(chosen))
	for i, c := range chosen {
		ids[i] = c.id
	}
	rows, err := s.db.QueryContext(ctx, s.q.fetch, jsonIDs(ids))
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	recs := make([]outbox.Record, 0, len(chosen))
	var bad []badRow
	for rows.Next() {
		// Scanned as they are: SQLite keeps any value in any column.
		var raw dialect.RawRow
		if err := rows.Scan(&raw.Seq, &raw.MessageID, &raw.Topic, &raw.Key, &raw.Type, &raw.Payload, &raw.Headers, &raw.CreatedAt, &raw.Attempts); err != nil {
			return nil, nil, err
		}
		r, err := dialect.DecodeRow(raw)
		if err != nil {
			bad = append(bad, badRow{rec: r, reason: err.Error()})
			continue
		}
		recs = append(recs, r)
	}
	return recs, bad, rows.Err()
}

// badRow is a claimed row that does not decode: what could be read of it, and why.
type badRow struct {
	rec    outbox.Record
	reason string
}

type claim struct {
	s       *Store
	retain  bool
	held    []candidate // registered in s.held until Finish
	recs    []outbox.Record
	bad     []badRow // held, not in recs: dead-lettered by Finish
	blocked []dialect.BlockedKey
	done    bool
	// recorded are the published messages a checkpoint wrote (no longer in held); lost is
	// why the claim holds nothing any more after a failed checkpoint.
	recorded map[int64]bool
	lost     error
}

func (c *claim) Records() []outbox.Record      { return c.recs }
func (c *claim) Blocked() []dialect.BlockedKey { return c.blocked }

func (c *claim) release() {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	c.s.held.remove(c.held)
}

var _ dialect.Checkpointer = (*claim)(nil)

// Checkpoint implements dialect.Checkpointer: the published messages in one write
// transaction, released from the claim once it committed; the others stay held. After a
// failed checkpoint the claim releases everything, as the interface says.
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
	dups := 0
	for _, seq := range o.Duplicates {
		if now[seq] {
			dups++
		}
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		if c.retain {
			_, err = tx.ExecContext(ctx, s.q.markPublished, time.Now().UnixMicro(), jsonIDs(o.Published))
		} else {
			_, err = tx.ExecContext(ctx, s.q.del, jsonIDs(o.Published))
		}
		if err != nil {
			return fmt.Errorf("removing published: %w", err)
		}
		if dups > 0 {
			if _, err := tx.ExecContext(ctx, s.q.duplicates, dups); err != nil {
				return fmt.Errorf("counting broker duplicates: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		c.done, c.lost = true, err
		s.held.remove(c.held)
		return fmt.Errorf("checkpointing claim: %w", err)
	}
	if c.recorded == nil {
		c.recorded = make(map[int64]bool, len(c.held))
	}
	var gone, kept []candidate
	for _, cd := range c.held {
		if now[cd.id] {
			gone = append(gone, cd)
			c.recorded[cd.id] = true
		} else {
			kept = append(kept, cd)
		}
	}
	s.held.remove(gone)
	c.held = kept
	return nil
}

// Finish implements dialect.Claim. The outcome is applied in one write transaction; the
// claim's messages are released when it has committed or failed, never before, so no other
// claim can see them between the two.
func (c *claim) Finish(ctx context.Context, o outbox.Outcome) error {
	if c.lost != nil {
		if o = dialect.Unrecorded(o, c.recorded); len(o.Published)+len(o.Retry)+len(o.Dead) > 0 {
			return fmt.Errorf("finishing claim: %w (%w)", dialect.ErrClaimLost, c.lost)
		}
		return nil
	}
	if c.done {
		return nil
	}
	c.done = true
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.held.remove(c.held)
	if err := c.check(o); err != nil {
		return fmt.Errorf("finishing claim: %w", err)
	}
	o = dialect.Unrecorded(o, c.recorded)
	if len(o.Published)+len(o.Retry)+len(o.Dead)+len(o.Duplicates)+len(c.bad) == 0 {
		return nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		now := time.Now().UnixMicro() // after BEGIN, which may have waited for the write lock
		if len(o.Published) > 0 {
			var err error
			if c.retain {
				_, err = tx.ExecContext(ctx, s.q.markPublished, now, jsonIDs(o.Published))
			} else {
				_, err = tx.ExecContext(ctx, s.q.del, jsonIDs(o.Published))
			}
			if err != nil {
				return fmt.Errorf("removing published: %w", err)
			}
		}
		for _, r := range o.Retry {
			at := now + max(r.Delay, 0).Microseconds()
			if _, err := tx.ExecContext(ctx, s.q.retry, at, r.Error, r.Seq, attemptsAdded(r), now); err != nil {
				return fmt.Errorf("scheduling retry of %d: %w", r.Seq, err)
			}
		}
		if len(o.Duplicates) > 0 {
			if _, err := tx.ExecContext(ctx, s.q.duplicates, len(o.Duplicates)); err != nil {
				return fmt.Errorf("counting broker duplicates: %w", err)
			}
		}
		// In id order, so dead letters of one key keep their order.
		dead := make([]badRow, 0, len(o.Dead)+len(c.bad))
		for _, d := range o.Dead {
			dead = append(dead, badRow{rec: outbox.Record{Seq: d.Seq}, reason: d.Error})
		}
		dead = append(dead, c.bad...)
		slices.SortFunc(dead, func(a, b badRow) int { return cmp.Compare(a.rec.Seq, b.rec.Seq) })
		for _, d := range dead {
			if err := s.toDead(ctx, tx, d, now); err != nil {
				return fmt.Errorf("dead-lettering %d: %w", d.rec.Seq, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("finishing claim: %w", err)
	}
	return nil
}

// check refuses an outcome naming a message this claim does not hold: it may be held by
// another claim, and changing it would break that claim's order.
func (c *claim) check(o outbox.Outcome) error {
	mine := make(map[int64]struct{}, len(c.recs))
	for i := range c.recs {
		mine[c.recs[i].Seq] = struct{}{}
	}
	return o.CheckHeld(func(seq int64) bool { _, ok := mine[seq]; return ok })
}

// toDead moves one row to the dead-letter table. The row is copied by SQL, so that it need not
// decode; a row that cannot be copied (a dead-letter table with stricter columns) is still
// dead-lettered: with placeholders for the columns that may not fit, their values in the
// reason.
func (s *Store) toDead(ctx context.Context, tx *sql.Tx, d badRow, now int64) error {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT dead_letter"); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, s.q.toDead, d.reason, now, d.rec.Seq)
	if err != nil {
		if _, rerr := tx.ExecContext(ctx, "ROLLBACK TO dead_letter"); rerr != nil {
			return errors.Join(err, rerr)
		}
		var vals [4]string
		if serr := tx.QueryRowContext(ctx, s.q.salvage, d.rec.Seq).Scan(&vals[0], &vals[1], &vals[2], &vals[3]); serr != nil {
			return errors.Join(err, serr)
		}
		reason := dialect.SalvageReason(d.reason, err, []string{"message_id", "headers", "created_at", "attempts"}, vals[:])
		if _, ferr := tx.ExecContext(ctx, s.q.toDeadSalvaged, uuid.Nil.String(), reason, now, d.rec.Seq); ferr != nil {
			return errors.Join(err, ferr)
		}
	}
	if _, err := tx.ExecContext(ctx, "RELEASE dead_letter"); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, s.q.delOne, d.rec.Seq)
	return err
}

// attemptsAdded is what a retry adds to attempts: nothing when the message was not attempted.
func attemptsAdded(r outbox.Retry) int {
	if r.NotAttempted {
		return 0
	}
	return 1
}
