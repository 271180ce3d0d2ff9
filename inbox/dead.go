package inbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// DeadLetter is a message that exhausted its attempts.
type DeadLetter struct {
	// ID numbers the dead letter: DeadLetters pages by it.
	ID       int64
	Message  Message
	Attempts int       // the deliveries the handler got
	Error    string    // the last error recorded by Failed ("" when none was)
	DeadAt   time.Time // when Attempt dead-lettered it
}

func scanDead(scan func(...any) error) (DeadLetter, error) {
	var (
		d               DeadLetter
		m               = &d.Message
		msgTime, deadAt int64
		headers         string
	)
	if err := scan(&d.ID, &m.ID, &m.Topic, &m.Type, &m.Source, &m.Key, &msgTime, &headers, &m.Payload,
		&m.Position, &d.Attempts, &d.Error, &deadAt); err != nil {
		return d, err
	}
	m.Time, d.DeadAt = fromMicros(msgTime), fromMicros(deadAt)
	if err := json.Unmarshal([]byte(headers), &m.Headers); err != nil {
		return d, fmt.Errorf("decoding headers of dead letter %d: %w", d.ID, err)
	}
	return d, nil
}

// DeadLetters returns up to limit of this consumer's dead letters with an ID greater than
// afterID, in ID order (pass the last ID to read the next page; 0 for the first).
func (in *Inbox) DeadLetters(ctx context.Context, afterID int64, limit int) ([]DeadLetter, error) {
	if limit <= 0 {
		return nil, nil
	}
	var out []DeadLetter
	err := in.db.query(ctx, in.q.listDead, []any{in.cfg.Consumer, afterID, limit}, func(scan func(...any) error) error {
		d, err := scanDead(scan)
		if err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: listing dead letters: %w", err)
	}
	return out, nil
}

// RetryDeadLetters makes the dead letters ids processable again and returns them (ids that
// are not this consumer's pending dead letters are skipped), for the caller to run through
// Attempt and Process again: their processed id and attempt count are deleted, and each is
// marked so that Process applies it even though later messages of its key were applied (the
// mark goes when it is applied, or with the retention of processed ids). It runs in one
// transaction.
func (in *Inbox) RetryDeadLetters(ctx context.Context, ids []int64) ([]DeadLetter, error) {
	var out []DeadLetter
	c := in.cfg.Consumer
	err := in.db.inTx(ctx, func(r runner) error {
		out = out[:0]
		now := micros(time.Now())
		for _, id := range ids {
			d, err := scanDead(r.queryRow(ctx, in.q.getDead, c, id).Scan)
			if isNoRows(err) {
				continue
			}
			if err != nil {
				return fmt.Errorf("reading dead letter %d: %w", id, err)
			}
			if _, err := r.exec(ctx, in.q.deleteProcessed, c, d.Message.ID); err != nil {
				return fmt.Errorf("forgetting %s: %w", d.Message.ID, err)
			}
			if _, err := r.exec(ctx, in.q.deleteAttempts, c, d.Message.ID); err != nil {
				return fmt.Errorf("clearing attempts of %s: %w", d.Message.ID, err)
			}
			if _, err := r.exec(ctx, in.q.markRetried, now, id); err != nil {
				return fmt.Errorf("marking dead letter %d: %w", id, err)
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: retrying dead letters: %w", err)
	}
	return out, nil
}

// PurgeDeadLetters deletes the dead letters ids of this consumer and returns how many it
// deleted. Their ids stay processed: redeliveries remain duplicates.
func (in *Inbox) PurgeDeadLetters(ctx context.Context, ids []int64) (int64, error) {
	var total int64
	err := in.db.inTx(ctx, func(r runner) error {
		total = 0
		for _, id := range ids {
			n, err := r.exec(ctx, in.q.purgeDead, in.cfg.Consumer, id)
			if err != nil {
				return err
			}
			total += n
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("inbox: purging dead letters: %w", err)
	}
	return total, nil
}
