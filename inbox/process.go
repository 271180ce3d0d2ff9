package inbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

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
// handler runs: a handler that crashes the process is counted too. It returns the number of
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
		dead = true // and commit
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("inbox: attempt of %s: %w", msg.ID, err)
	}
	if dead {
		return attempt, ErrDeadLettered
	}
	return attempt, nil
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
	var (
		fresh   bool
		applied int64 // the key's position before this message
	)
	if in.cfg.Dialect == outbox.Postgres {
		// One statement: record the id and, if it is new, read and advance the key's
		// position and clear the attempt count.
		var old *int64
		q := in.q.processPG
		if attempted {
			q = in.q.processPGClear
		}
		if err := r.queryRow(ctx, q, in.cfg.Consumer, msg.ID, msg.Key, msg.Position, micros(now)).Scan(&fresh, &old); err != nil {
			return 0, fmt.Errorf("inbox: recording %s: %w", msg.ID, err)
		}
		if old != nil {
			applied = *old
		}
	} else {
		var err error
		if fresh, applied, err = in.processSteps(ctx, r, msg, attempted, now); err != nil {
			return 0, err
		}
	}
	if !fresh {
		return Duplicate, nil
	}
	if msg.Key != "" && msg.Position > 0 && msg.Position <= applied && in.late(msg, now) {
		return Stale, nil
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
	applied := make(map[string]int64) // per key: the position before the next message of the batch
	err := r.query(ctx, in.q.processBatchPG, []any{in.cfg.Consumer, ids, keys, positions, micros(now), tried}, func(scan func(...any) error) error {
		var (
			isID bool
			name string
			pos  int64
		)
		if err := scan(&isID, &name, &pos); err != nil {
			return err
		}
		if isID {
			fresh[name] = true
		} else {
			applied[name] = pos
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("inbox: recording a batch of %d: %w", len(msgs), err)
	}
	for i, m := range msgs {
		if !fresh[m.ID] {
			out[i] = Duplicate
			continue
		}
		delete(fresh, m.ID) // a second copy in the batch is a Duplicate
		if m.Key != "" && m.Position > 0 {
			before := applied[m.Key]
			applied[m.Key] = max(before, m.Position)
			if m.Position <= before && in.late(m, now) {
				out[i] = Stale
				continue
			}
		}
		out[i] = Applied
		*apply = append(*apply, m)
	}
	return nil
}

// processSteps is the PostgreSQL statement of process in steps, for MySQL and SQLite.
func (in *Inbox) processSteps(ctx context.Context, r runner, msg Message, attempted bool, now time.Time) (fresh bool, applied int64, err error) {
	c := in.cfg.Consumer
	n, err := r.exec(ctx, in.q.insertProcessed, c, msg.ID, msg.Key, msg.Position, micros(now))
	if err != nil {
		return false, 0, fmt.Errorf("inbox: recording %s: %w", msg.ID, err)
	}
	if n == 0 {
		return false, 0, nil
	}
	if msg.Key != "" && msg.Position > 0 {
		switch err := r.queryRow(ctx, in.q.keyPosition, c, msg.Key).Scan(&applied); {
		case isNoRows(err):
			applied = 0
		case err != nil:
			return false, 0, fmt.Errorf("inbox: reading position of key %q: %w", msg.Key, err)
		}
		if _, err := r.exec(ctx, in.q.upsertKey, c, msg.Key, msg.Position, micros(now)); err != nil {
			return false, 0, fmt.Errorf("inbox: advancing key %q: %w", msg.Key, err)
		}
	}
	if attempted {
		if _, err := r.exec(ctx, in.q.deleteAttempts, c, msg.ID); err != nil {
			return false, 0, fmt.Errorf("inbox: clearing attempts of %s: %w", msg.ID, err)
		}
	}
	return true, applied, nil
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
