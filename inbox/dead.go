package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/outboxgo/outbox"
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

// RetryDeadLetters marks the dead letters ids of this consumer for one more try, and
// returns those it marked (ids that are not this consumer's dead letters, or are marked
// already, are skipped). It does not run them: the consumer does, with its handler, in
// Redrive, which its adapter's Run calls every few seconds. Marked letters are not listed
// by DeadLetters.
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

// Redrive runs handler on the dead letters marked by RetryDeadLetters, oldest first, each in
// a transaction of its own on Config.Pool or Config.DB: the handler's effects and the dead
// letter's deletion commit together. It applies a letter whatever its key's position (later
// messages of its key were applied while it was dead; the key's position is not lowered),
// and its id stays processed, so broker redeliveries remain Duplicates. A letter whose
// handler fails again goes back to the dead letters with the new error and one more attempt.
// It returns how many letters were applied. Concurrent Redrives (several consumer replicas)
// take different letters.
func (in *Inbox) Redrive(ctx context.Context, handler Handler) (applied int, err error) {
	h := wrapHandler(handler)
	c := in.cfg.Consumer
	for {
		var (
			d    DeadLetter
			none bool
		)
		err := in.db.inTxOf(ctx, func(tx outbox.Tx, r runner) error {
			var err error
			d, err = scanDead(r.queryRow(ctx, in.q.nextRetried, c).Scan)
			if isNoRows(err) {
				none = true
				return nil
			}
			if err != nil {
				return fmt.Errorf("reading a retried dead letter: %w", err)
			}
			if err := h(ctx, tx, d.Message); err != nil {
				return err
			}
			m, now := d.Message, micros(time.Now())
			if _, err := r.exec(ctx, in.q.touchProcessed, c, m.ID, m.Key, m.Position, now); err != nil {
				return fmt.Errorf("recording %s: %w", m.ID, err)
			}
			if _, err := r.exec(ctx, in.q.purgeDead, c, d.ID); err != nil {
				return fmt.Errorf("deleting dead letter %d: %w", d.ID, err)
			}
			return nil
		})
		var herr *handlerError
		switch {
		case errors.As(err, &herr) && ctx.Err() == nil:
			text := outbox.StorableText(herr.err.Error(), maxErrorBytes)
			if _, err := in.db.exec(ctx, in.q.unmarkRetried, text, micros(time.Now()), c, d.ID); err != nil {
				return applied, fmt.Errorf("inbox: returning dead letter %d: %w", d.ID, err)
			}
			in.cfg.Logger.WarnContext(ctx, "inbox: retried dead letter failed again", "consumer", c,
				"dead_letter", d.ID, "message_id", d.Message.ID, "error", text)
		case err != nil:
			return applied, fmt.Errorf("inbox: redriving dead letters: %w", err)
		case none:
			return applied, nil
		default:
			applied++
		}
	}
}

// RunRedrive runs Redrive with handler now and then every interval (default 5 s) until ctx
// is done, logging its errors to Config.Logger. It returns ctx's error. Adapters' Run calls
// it.
func (in *Inbox) RunRedrive(ctx context.Context, handler Handler, interval time.Duration) error {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := in.Redrive(ctx, handler); err != nil && ctx.Err() == nil {
			in.cfg.Logger.ErrorContext(ctx, "inbox redrive", "consumer", in.cfg.Consumer, "error", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
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

// Reject moves a message the consumer cannot read (Envelope.Message failed, or the adapter
// could not decode the broker's message at all) to the dead letters with reason, and records
// its id as processed so that its redeliveries are Duplicates: nothing is dropped silently,
// and the adapter acks it. msg carries what could be read; when the message has no id, the
// adapter gives a stable one of its broker (for instance "nats:<stream>:<sequence>").
func (in *Inbox) Reject(ctx context.Context, msg Message, reason error) error {
	if err := msg.validate(); err != nil {
		return err
	}
	text := "<nil>"
	if reason != nil {
		text = reason.Error()
	}
	text = outbox.StorableText(text, maxErrorBytes)
	headers, err := json.Marshal(msg.Headers)
	if err != nil {
		return fmt.Errorf("inbox: rejecting %s: encoding headers: %w", msg.ID, err)
	}
	payload := msg.Payload
	if payload == nil {
		payload = []byte{}
	}
	c, now := in.cfg.Consumer, micros(time.Now())
	err = in.db.inTx(ctx, func(r runner) error {
		if _, err := r.exec(ctx, in.q.insertDead, c, msg.ID, outbox.StorableText(msg.Topic, 1024), outbox.StorableText(msg.Type, 1024),
			outbox.StorableText(msg.Source, 1024), msg.Key, micros(msg.Time), string(headers), payload, msg.Position, 0, text, now); err != nil {
			return err
		}
		_, err := r.exec(ctx, in.q.touchProcessed, c, msg.ID, msg.Key, msg.Position, now)
		return err
	})
	if err != nil {
		return fmt.Errorf("inbox: rejecting %s: %w", msg.ID, err)
	}
	return nil
}
