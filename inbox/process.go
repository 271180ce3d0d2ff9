package inbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outboxgo/outbox"
)

// Result says what Process did with a message.
type Result int

// Results of Process.
const (
	// Applied: the message was new; the handler ran (and returned nil).
	Applied Result = iota + 1
	// Duplicate: the message's id was processed already; the handler did not run.
	Duplicate
	// Stale: the id is unknown but the key has applied a later position and the message is
	// old enough for its id to have aged out of the id window: a late duplicate. The handler
	// did not run.
	Stale
)

func (r Result) String() string {
	switch r {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	case Stale:
		return "stale"
	case DeadLettered:
		return "dead_lettered"
	default:
		return fmt.Sprintf("Result(%d)", int(r))
	}
}

// Handler applies a message's effects inside the consumer's transaction tx (the one given
// to Process). It may write business rows and enqueue outbox messages in tx; its error rolls
// the whole transaction back.
type Handler func(ctx context.Context, tx outbox.Tx, msg Message) error

// BulkHandler applies the effects of msgs, the new messages of a batch in delivery order,
// inside the consumer's transaction tx, at once (say, one multi-row INSERT): what
// DeliverBulk calls. Its error rolls the whole batch back.
type BulkHandler func(ctx context.Context, tx outbox.Tx, msgs []Message) error

// each is the BulkHandler that runs h on each message in order.
func each(h Handler) BulkHandler {
	return func(ctx context.Context, tx outbox.Tx, msgs []Message) error {
		for _, m := range msgs {
			if err := h(ctx, tx, m); err != nil {
				return err
			}
		}
		return nil
	}
}

// Attempt counts a delivery of msg, durably and in its own short transaction, before the
// handler runs: a handler that crashes the process is counted too. With a pgx pool, the
// count is one statement and its transaction one round trip, committed without waiting for
// PostgreSQL's WAL flush (synchronous_commit off, for that transaction only): it survives the
// consumer's process crashing, which is what it is for, and the commit of the delivery that
// follows flushes it; a crash of PostgreSQL itself in the moment after the count can lose it
// (one more delivery before the dead letters). Deliver sends the count in the same round trip
// as the delivery's BEGIN. It returns the number of
// deliveries counted so far. When that exceeds MaxAttempts, the message is moved to the dead
// letters with the last error recorded by Failed, recorded as processed (so that redeliveries
// are duplicates) and Attempt returns ErrDeadLettered: ack it without running the handler.
//
// A message already processed is not counted: Attempt returns 0 and Process will report it a
// Duplicate.
func (in *Inbox) Attempt(ctx context.Context, msg Message) (attempt int, err error) {
	if err := msg.validate(); err != nil {
		return 0, err
	}
	if h, ok := in.db.(pgxHandle); ok {
		return in.attemptPipelined(ctx, h, msg)
	}
	c := in.cfg.Consumer
	dead := false
	err = in.db.inTx(ctx, func(r runner) error {
		dead = false
		var seen int
		if err := r.queryRow(ctx, in.q.isProcessed, c, msg.ID).Scan(&seen); err != nil {
			return fmt.Errorf("looking up message: %w", err)
		}
		if seen > 0 {
			attempt = 0
			return nil
		}
		now := micros(time.Now())
		if _, err := r.exec(ctx, in.q.upsertAttempt, c, msg.ID, now); err != nil {
			return fmt.Errorf("counting attempt: %w", err)
		}
		var lastErr string
		if err := r.queryRow(ctx, in.q.readAttempt, c, msg.ID).Scan(&attempt, &lastErr); err != nil {
			return fmt.Errorf("reading attempts: %w", err)
		}
		if attempt <= in.cfg.MaxAttempts {
			return nil
		}
		dead = true // and commit
		return in.deadLetter(ctx, r, msg, attempt, lastErr, now)
	})
	if err != nil {
		return 0, fmt.Errorf("inbox: attempt of %s: %w", msg.ID, err)
	}
	if dead {
		return attempt, ErrDeadLettered
	}
	return attempt, nil
}

// attemptPipelined is Attempt on a pgx pool: the count is one statement, in a transaction
// sent in one round trip (queueAttempt).
func (in *Inbox) attemptPipelined(ctx context.Context, h pgxHandle, msg Message) (int, error) {
	var a attemptRow
	err := h.txBatch(ctx, "attempt of "+msg.ID, func(b *pgx.Batch) { in.queueAttempt(b, msg, time.Now(), &a) })
	if err != nil {
		return 0, err
	}
	return in.afterAttempt(ctx, msg, a)
}

// attemptRow is what the attempt statement returns.
type attemptRow struct {
	seen    bool // the id is processed: nothing was counted
	attempt int
	lastErr string
}

// queueAttempt queues Attempt's count on b, which began a transaction, and commits it
// without waiting for the WAL flush (synchronous_commit off): the count is for a handler
// that crashes the consumer's process, which it survives, and the commit of the delivery
// that follows flushes it too. A PostgreSQL crash in the moment after can lose it: one more
// delivery before the dead letters. *a is set when b's results are read.
func (in *Inbox) queueAttempt(b *pgx.Batch, msg Message, now time.Time, a *attemptRow) {
	b.Queue("set local synchronous_commit = off")
	b.Queue(in.q.attemptPG, in.cfg.Consumer, msg.ID, micros(now)).QueryRow(func(row pgx.Row) error {
		return row.Scan(&a.seen, &a.attempt, &a.lastErr)
	})
	b.Queue("commit")
}

// afterAttempt dead-letters msg if the counted attempt a exceeds MaxAttempts, and returns
// Attempt's result.
func (in *Inbox) afterAttempt(ctx context.Context, msg Message, a attemptRow) (int, error) {
	switch {
	case a.seen:
		return 0, nil
	case a.attempt <= in.cfg.MaxAttempts:
		return a.attempt, nil
	}
	err := in.db.inTx(ctx, func(r runner) error {
		return in.deadLetter(ctx, r, msg, a.attempt, a.lastErr, micros(time.Now()))
	})
	if err != nil {
		return 0, fmt.Errorf("inbox: attempt of %s: %w", msg.ID, err)
	}
	return a.attempt, ErrDeadLettered
}

// deadLetter moves msg, whose attempt-th delivery was just counted, to the dead letters with
// lastErr, records it as processed and clears its count, in r's transaction.
func (in *Inbox) deadLetter(ctx context.Context, r runner, msg Message, attempt int, lastErr string, now int64) error {
	c := in.cfg.Consumer
	headers, err := json.Marshal(msg.Headers)
	if err != nil {
		return fmt.Errorf("encoding headers: %w", err)
	}
	payload := msg.Payload
	if payload == nil {
		payload = []byte{}
	}
	if _, err := r.exec(ctx, in.q.insertDead, c, msg.ID, msg.Topic, msg.Type, msg.Source, msg.Key,
		micros(msg.Time), string(headers), payload, msg.Position, attempt-1, lastErr, now); err != nil {
		return fmt.Errorf("dead-lettering: %w", err)
	}
	if _, err := r.exec(ctx, in.q.insertProcessed, c, msg.ID, msg.Key, msg.Position, now); err != nil {
		return fmt.Errorf("recording dead letter as processed: %w", err)
	}
	if _, err := r.exec(ctx, in.q.deleteAttempts, c, msg.ID); err != nil {
		return fmt.Errorf("clearing attempts: %w", err)
	}
	return nil
}

// Process applies msg once, inside the consumer's transaction tx (a pgx.Tx or a *sql.Tx, as
// for outbox.Enqueue): it records msg's id as processed, checks and advances its key's
// position, then runs handler with tx. The caller commits tx when Process returns a nil
// error, and acks the message only after the commit; it rolls tx back on an error (the
// handler's, returned as is, or the inbox's).
//
// Duplicate and Stale messages are not handed to handler: commit (or roll back) and ack.
//
// On PostgreSQL, Process costs one statement besides the handler's; on MySQL and SQLite,
// up to four (the same steps, one at a time).
//
// Two copies of one message processed at the same moment give one Applied and one
// Duplicate: the second insert of the id waits for the first transaction and then finds the
// id taken.
func (in *Inbox) Process(ctx context.Context, tx outbox.Tx, msg Message, handler Handler) (Result, error) {
	if err := msg.validate(); err != nil {
		return 0, err
	}
	r, err := in.txRunner(tx)
	if err != nil {
		return 0, err
	}
	return in.process(ctx, r, tx, msg, true, handler)
}

// process is Process on r, tx's runner. attempted says the message may have an attempt
// count to clear (Attempt or Failed ran for it); when false, MySQL and SQLite skip that
// step (a count left by a crashed delivery goes with the retention of counts).
func (in *Inbox) process(ctx context.Context, r runner, tx outbox.Tx, msg Message, attempted bool, handler Handler) (Result, error) {
	if err := msg.validate(); err != nil {
		return 0, err
	}
	now := time.Now()
	fresh, err := in.record(ctx, r, msg, attempted, now)
	if err != nil {
		return 0, err
	}
	return in.recorded(ctx, r, tx, msg, fresh, now, handler)
}

// recorded is the rest of process once the id is recorded (fresh says it was new, at now).
func (in *Inbox) recorded(ctx context.Context, r runner, tx outbox.Tx, msg Message, fresh bool, now time.Time, handler Handler) (Result, error) {
	if !fresh {
		return Duplicate, nil
	}
	if msg.Key != "" && msg.Position > 0 && in.late(msg, now) {
		// Only a message whose id could have aged out needs the position its key's expired
		// ids left. It is read after the id's insert, in a statement of its own: that insert
		// waited for a retention run deleting the same id, whose fold this read then sees.
		folded, err := in.foldedPosition(ctx, r, msg.Key)
		if err != nil {
			return 0, err
		}
		if msg.Position <= folded {
			return Stale, nil
		}
	}
	if err := handler(ctx, tx, msg); err != nil {
		return 0, err
	}
	return Applied, nil
}

// processBatch is process for msgs in order, in tx, with one call of bulk for the messages
// to apply; attempted[i] is process's attempted for msgs[i]. On PostgreSQL the inbox's part
// takes one statement for the whole batch.
func (in *Inbox) processBatch(ctx context.Context, r runner, tx outbox.Tx, msgs []Message, attempted []bool, bulk BulkHandler) ([]Result, error) {
	out := make([]Result, len(msgs))
	for i := range msgs {
		if err := msgs[i].validate(); err != nil {
			return nil, err
		}
	}
	apply := make([]Message, 0, len(msgs))
	if in.cfg.Dialect != outbox.Postgres {
		collect := func(_ context.Context, _ outbox.Tx, m Message) error {
			apply = append(apply, m)
			return nil
		}
		for i, m := range msgs {
			res, err := in.process(ctx, r, tx, m, attempted[i], collect)
			if err != nil {
				return nil, err
			}
			out[i] = res
		}
	} else if err := in.recordBatchPG(ctx, r, msgs, attempted, out, &apply); err != nil {
		return nil, err
	}
	if len(apply) > 0 {
		if err := bulk(ctx, tx, apply); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// recordBatchPG is the PostgreSQL statement of processBatch: it sets out[i] to Duplicate,
// Stale or Applied and appends the messages to apply to *apply, in order.
func (in *Inbox) recordBatchPG(ctx context.Context, r runner, msgs []Message, attempted []bool, out []Result, apply *[]Message) error {
	now := time.Now()
	ids, keys, positions := make([]string, len(msgs)), make([]string, len(msgs)), make([]int64, len(msgs))
	tried := []string{}
	for i, m := range msgs {
		ids[i], keys[i], positions[i] = m.ID, m.Key, m.Position
		if attempted[i] {
			tried = append(tried, m.ID)
		}
	}
	fresh := make(map[string]bool, len(msgs))
	err := r.query(ctx, in.q.processBatchPG, []any{in.cfg.Consumer, ids, keys, positions, micros(now), tried}, func(scan func(...any) error) error {
		var id string
		if err := scan(&id); err != nil {
			return err
		}
		fresh[id] = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("inbox: recording a batch of %d: %w", len(msgs), err)
	}
	// The positions folded from expired ids, for the keys of new messages old enough to need
	// them (see process), in a statement after the insert.
	var lateKeys []string
	seen := make(map[string]bool)
	for _, m := range msgs {
		if fresh[m.ID] && m.Key != "" && m.Position > 0 && in.late(m, now) && !seen[m.Key] {
			seen[m.Key] = true
			lateKeys = append(lateKeys, m.Key)
		}
	}
	folded := make(map[string]int64, len(lateKeys))
	if len(lateKeys) > 0 {
		err := r.query(ctx, in.q.keyPositionsPG, []any{in.cfg.Consumer, lateKeys}, func(scan func(...any) error) error {
			var (
				key string
				pos int64
			)
			if err := scan(&key, &pos); err != nil {
				return err
			}
			folded[key] = pos
			return nil
		})
		if err != nil {
			return fmt.Errorf("inbox: reading the positions of %d keys: %w", len(lateKeys), err)
		}
	}
	for i, m := range msgs {
		if !fresh[m.ID] {
			out[i] = Duplicate
			continue
		}
		delete(fresh, m.ID) // a second copy in the batch is a Duplicate
		if m.Key != "" && m.Position > 0 && m.Position <= folded[m.Key] && in.late(m, now) {
			out[i] = Stale
			continue
		}
		out[i] = Applied
		*apply = append(*apply, m)
	}
	return nil
}

// record records msg's id as processed and, if it is new and attempted, clears its attempt
// count; it reports whether the id was new. On PostgreSQL this is one statement.
func (in *Inbox) record(ctx context.Context, r runner, msg Message, attempted bool, now time.Time) (fresh bool, err error) {
	c := in.cfg.Consumer
	if in.cfg.Dialect == outbox.Postgres && attempted {
		if err := r.queryRow(ctx, in.q.processPGClear, c, msg.ID, msg.Key, msg.Position, micros(now)).Scan(&fresh); err != nil {
			return false, fmt.Errorf("inbox: recording %s: %w", msg.ID, err)
		}
		return fresh, nil
	}
	n, err := r.exec(ctx, in.q.insertProcessed, c, msg.ID, msg.Key, msg.Position, micros(now))
	if err != nil {
		return false, fmt.Errorf("inbox: recording %s: %w", msg.ID, err)
	}
	if n == 0 {
		return false, nil
	}
	if attempted && in.cfg.Dialect != outbox.Postgres {
		if _, err := r.exec(ctx, in.q.deleteAttempts, c, msg.ID); err != nil {
			return false, fmt.Errorf("inbox: clearing attempts of %s: %w", msg.ID, err)
		}
	}
	return true, nil
}

// queueRecord queues record's statement (on PostgreSQL one) on b, for a transaction that
// begins with it; *fresh is set when b's results are read.
func (in *Inbox) queueRecord(b *pgx.Batch, msg Message, attempted bool, now time.Time, fresh *bool) {
	args := []any{in.cfg.Consumer, msg.ID, msg.Key, msg.Position, micros(now)}
	if attempted {
		b.Queue(in.q.processPGClear, args...).QueryRow(func(row pgx.Row) error { return row.Scan(fresh) })
		return
	}
	b.Queue(in.q.insertProcessed, args...).Exec(func(tag pgconn.CommandTag) error {
		*fresh = tag.RowsAffected() == 1
		return nil
	})
}

// foldedPosition reads the greatest position of key's expired ids (0 if none), locked
// against a concurrent fold.
func (in *Inbox) foldedPosition(ctx context.Context, r runner, key string) (int64, error) {
	var pos int64
	switch err := r.queryRow(ctx, in.q.keyPosition, in.cfg.Consumer, key).Scan(&pos); {
	case isNoRows(err):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("inbox: reading position of key %q: %w", key, err)
	}
	return pos, nil
}

// late reports whether msg's id could have aged out of the id window: it has no time, or it
// is older than Retention less ClockSkewMargin.
func (in *Inbox) late(msg Message, now time.Time) bool {
	return msg.Time.IsZero() || msg.Time.Before(now.Add(-(in.cfg.Retention - ClockSkewMargin)))
}

// Failed records handlerErr as the last error of msg's delivery (in its own short
// transaction), so that the dead letter carries the reason; a delivery Attempt did not
// count (a first one, through Deliver) is counted now. Call it after rolling back the
// transaction of a failed Process.
func (in *Inbox) Failed(ctx context.Context, msg Message, handlerErr error) error {
	if err := msg.validate(); err != nil {
		return err
	}
	text := "<nil>"
	if handlerErr != nil {
		text = handlerErr.Error()
	}
	text = outbox.StorableText(text, maxErrorBytes) // valid UTF-8, no NUL (PostgreSQL refuses both), bounded
	if _, err := in.db.exec(ctx, in.q.failed, in.cfg.Consumer, msg.ID, text, micros(time.Now())); err != nil {
		return fmt.Errorf("inbox: recording failure of %s: %w", msg.ID, err)
	}
	return nil
}
