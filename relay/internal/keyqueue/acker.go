package keyqueue

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/outboxgo/outbox/relay"
)

// AckKind is what the database must do before a message counts as done.
type AckKind uint8

// Acknowledgement kinds.
const (
	Delete AckKind = iota + 1 // delete the acknowledged row
	Dead                      // write the dead letter (and delete the row, if the source deletes rows)
	// CountOnly: nothing to delete (the source keeps or has no rows), only count the
	// acknowledged message as a broker duplicate (Duplicate is set).
	CountOnly
)

// Ack is one acknowledgement for the database.
type Ack[T any] struct {
	Entry  *Entry[T]
	Kind   AckKind
	Reason string // why the message is dead
	// Duplicate marks a Delete of a message its broker acknowledged as a duplicate
	// (outbox.Outcome.Duplicates): the apply function counts it.
	Duplicate bool
}

// ApplyFunc writes one batch of acknowledgements to the database. It returns those to apply
// again later (a row not visible yet, the delete that follows a dead letter), or an error:
// then the whole batch is applied again, so every write must be idempotent.
type ApplyFunc[T any] func(ctx context.Context, acks []Ack[T]) (later []Ack[T], err error)

// maxAckBatch bounds one round of database writes.
const maxAckBatch = 5000

// queueAck hands a to the acker.
func (q *Queue[T]) queueAck(a Ack[T]) {
	q.acks = append(q.acks, a)
	select {
	case q.ackWake <- struct{}{}:
	default:
	}
}

// StartAcker runs the acker until stop is called: it applies the queued acknowledgements in
// batches with apply, and marks their messages done once the database has them. A failed
// write is retried (the messages stay pending, holding the position back) until stop. The
// acker does not end with ctx (only its values are used): it outlives the source's context
// for the final drain of a graceful stop.
func (q *Queue[T]) StartAcker(ctx context.Context, apply ApplyFunc[T]) (stop func()) {
	ackCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		q.ackLoop(ackCtx, apply)
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

func (q *Queue[T]) ackLoop(ctx context.Context, apply ApplyFunc[T]) {
	failures, waits := 0, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.ackWake:
		}
		for ctx.Err() == nil {
			q.mu.Lock()
			n := min(len(q.acks), maxAckBatch)
			if n == 0 {
				q.mu.Unlock()
				break
			}
			acks := make([]Ack[T], n)
			copy(acks, q.acks)
			clear(q.acks[:n])
			q.acks = q.acks[n:]
			q.ackBusy = n
			q.mu.Unlock()

			later, err := apply(ctx, acks)
			q.mu.Lock()
			q.ackBusy = 0
			if err != nil {
				// Put them back in front, unless a new session made them stale.
				keep := make([]Ack[T], 0, len(acks)+len(q.acks))
				for _, a := range acks {
					if a.Entry.gen == q.gen {
						keep = append(keep, a)
					}
				}
				q.acks = append(keep, q.acks...)
				q.Nudge()
				q.mu.Unlock()
				if ctx.Err() != nil {
					return
				}
				failures++
				d := min(5*time.Second, 100*time.Millisecond<<min(failures-1, 6))
				d = d/2 + rand.N(d/2+1) // jittered: relays sharing a database don't retry in step
				q.cfg.Logger.Warn("writing acknowledgements to the database failed; retrying",
					slog.Int("messages", len(acks)), slog.Any("error", err), slog.Duration("retry_in", d))
				if relay.Sleep(ctx, d) != nil {
					return
				}
				continue
			}
			failures = 0
			again := make(map[*Entry[T]]bool, len(later))
			for _, a := range later {
				again[a.Entry] = true
				if a.Entry.gen == q.gen {
					q.acks = append(q.acks, a)
				}
			}
			for _, a := range acks {
				if !again[a.Entry] {
					q.done(a.Entry)
				}
			}
			q.mu.Unlock()
			if len(later) < len(acks) {
				waits = 0
				continue
			}
			// Only rows not visible yet: give them a moment.
			waits++
			if relay.Sleep(ctx, min(time.Second, time.Millisecond<<min(waits, 10))) != nil {
				return
			}
		}
	}
}
