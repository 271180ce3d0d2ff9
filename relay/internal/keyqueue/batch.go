package keyqueue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
)

// lane is the queue of one key (or of one message without a key). At most one batch owns a
// lane at a time, which is what keeps per-key order.
type lane[T any] struct {
	key     string
	q       []*Entry[T]
	owned   bool // handed out in a batch
	queued  bool // in Queue.ready
	delayed bool // in Queue.delayed
	until   time.Time
	index   int // in the heap it is in (ready or delayed), -1 when in none
}

// Next blocks until messages are ready, waits up to BatchLinger for the batch to fill (only
// while other batches are out), and returns up to BatchSize messages. A batch never shares a
// key with another unfinished batch, and holds a key's messages in log order. It takes the
// lock.
func (q *Queue[T]) Next(ctx context.Context) (relay.Batch, error) {
	var lingerUntil time.Time
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		q.mu.Lock()
		now := time.Now()
		q.promoteDue(now)
		if q.readyMsgs > 0 {
			// Linger only while other batches are out: when the sink is idle, waiting would
			// only add latency.
			if q.readyMsgs >= q.cfg.BatchSize || q.cfg.BatchLinger <= 0 || q.inflight == 0 ||
				(!lingerUntil.IsZero() && !now.Before(lingerUntil)) {
				b := q.take()
				q.mu.Unlock()
				return b, nil
			}
			if lingerUntil.IsZero() {
				lingerUntil = now.Add(q.cfg.BatchLinger)
			}
			q.mu.Unlock()
			if err := relay.Sleep(ctx, lingerUntil.Sub(now)); err != nil {
				return nil, err
			}
			continue
		}
		lingerUntil = time.Time{}
		wake := q.wake
		q.waiting++
		var (
			due   <-chan time.Time
			timer *time.Timer
		)
		if q.delayed.Len() > 0 {
			timer = time.NewTimer(q.delayed.lanes[0].until.Sub(now))
			due = timer.C
		}
		q.mu.Unlock()
		var err error
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-wake:
		case <-due:
		}
		if timer != nil {
			timer.Stop()
		}
		q.mu.Lock()
		q.waiting--
		q.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

// signal wakes the Next callers waiting for messages.
func (q *Queue[T]) signal() {
	if q.waiting > 0 {
		close(q.wake)
		q.wake = make(chan struct{})
	}
}

// pushReady queues l for Next.
func (q *Queue[T]) pushReady(l *lane[T]) {
	l.queued = true
	heap.Push(&q.ready, l)
	q.readyMsgs += len(l.q)
}

// promoteDue moves lanes whose retry delay passed back to the ready queue.
func (q *Queue[T]) promoteDue(now time.Time) {
	for q.delayed.Len() > 0 && !q.delayed.lanes[0].until.After(now) {
		l := heap.Pop(&q.delayed).(*lane[T])
		l.delayed = false
		q.settle(l)
	}
}

// settle puts an unowned, undelayed lane where it belongs: ready when it has messages,
// forgotten when it has none.
func (q *Queue[T]) settle(l *lane[T]) {
	switch {
	case l.owned || l.delayed || l.queued:
	case len(l.q) > 0:
		q.pushReady(l)
	case l.key != "" && q.lanes[l.key] == l:
		delete(q.lanes, l.key)
	}
}

// maxPerLane bounds how many messages of one key go into one batch. The relay publishes a
// key's messages one wave (one broker round trip) after another, and a batch is finished (and
// its position confirmed) only after its last wave: a short lane keeps batches short.
const maxPerLane = 8

// take builds a batch from the ready lanes, oldest head first (the position advances only past
// the oldest unfinished message): its share of the lanes (so concurrent workers split the keys
// between them), up to maxPerLane messages of each and BatchSize in all.
func (q *Queue[T]) take() *batch[T] {
	b := &batch[T]{q: q, gen: q.gen}
	lanes := q.ready.Len()
	share := (lanes + q.cfg.Workers - 1) / q.cfg.Workers
	perLane := min(max(1, q.cfg.BatchSize/share), maxPerLane)
	room := q.cfg.BatchSize
	for room > 0 && len(b.lanes) < share && q.ready.Len() > 0 {
		l := heap.Pop(&q.ready).(*lane[T])
		l.queued = false
		n := min(len(l.q), room, perLane)
		b.entries = append(b.entries, l.q[:n]...)
		clear(l.q[:n])
		l.q = l.q[n:]
		if len(l.q) == 0 {
			l.q = nil
		}
		q.readyMsgs -= len(l.q) + n
		room -= n
		// A lane that did not fit whole stays owned: its rest follows after Finish.
		l.owned = true
		b.lanes = append(b.lanes, l)
	}
	b.recs = make([]outbox.Record, len(b.entries))
	for i, e := range b.entries {
		b.recs[i] = e.Record
	}
	q.inflight++
	return b
}

// batch is a set of messages held by one worker.
type batch[T any] struct {
	q        *Queue[T]
	gen      uint64
	entries  []*Entry[T]
	lanes    []*lane[T]
	recs     []outbox.Record
	finished bool
	// checkpointed are the published messages a Checkpoint already handed on (done, or
	// queued for the acker): Finish leaves them alone.
	checkpointed map[int64]bool
}

var _ relay.Checkpointer = (*batch[struct{}])(nil)

// errStale is a checkpoint's error for a batch of a session that ended.
var errStale = errors.New("checkpointing batch: its session ended; the messages are read again")

// Checkpoint implements relay.Checkpointer: published messages are handed on at once, as
// Finish would (deleted by the acker, or done), so that the position can move past them
// while the rest of the batch is out. The batch keeps its keys until Finish.
func (b *batch[T]) Checkpoint(_ context.Context, o outbox.Outcome) error {
	if len(o.Retry)+len(o.Dead) > 0 {
		return errors.New("checkpointing batch: only published messages can be checkpointed")
	}
	index := make(map[int64]*Entry[T], len(b.entries))
	for _, e := range b.entries {
		index[e.Record.Seq] = e
	}
	for _, seq := range o.Published {
		if _, ok := index[seq]; !ok || b.checkpointed[seq] {
			return fmt.Errorf("checkpointing batch: message %d is not in this batch, or checkpointed already", seq)
		}
	}
	dup := make(map[int64]bool, len(o.Duplicates))
	for _, seq := range o.Duplicates {
		dup[seq] = true
	}
	q := b.q
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case b.finished:
		return errors.New("checkpointing batch: finished already")
	case b.gen != q.gen:
		return errStale
	}
	if b.checkpointed == nil {
		b.checkpointed = make(map[int64]bool, len(b.entries))
	}
	for _, seq := range o.Published {
		b.checkpointed[seq] = true
		q.published(index[seq], dup[seq])
	}
	return nil
}

// published hands on an acknowledged entry: to the acker (deleted, or its broker duplicate
// counted), or done. It is called with the lock held.
func (q *Queue[T]) published(e *Entry[T], dup bool) {
	switch {
	case q.cfg.DeleteAcked:
		q.queueAck(Ack[T]{Entry: e, Kind: Delete, Duplicate: dup})
	case dup:
		q.queueAck(Ack[T]{Entry: e, Kind: CountOnly, Duplicate: true})
	default:
		q.done(e)
	}
}

// Records implements relay.Batch.
func (b *batch[T]) Records() []outbox.Record { return b.recs }

// Finish implements relay.Batch. Published messages are done (once their rows are deleted
// with DeleteAcked), dead ones once they are in the dead-letter table; a retried message goes
// back to the head of its key's queue with attempts+1, and the key stays blocked until the
// delay passed; messages in no list go back to the head of their key's queue unchanged.
func (b *batch[T]) Finish(_ context.Context, o outbox.Outcome) error {
	q := b.q
	const (
		none = iota
		published
		retried
		dead
	)
	status := make([]uint8, len(b.entries))
	delays := make([]time.Duration, len(b.entries))
	reasons := make(map[int]string)
	notAttempted := make(map[int]bool)
	index := make(map[int64]int, len(b.entries))
	for i, e := range b.entries {
		index[e.Record.Seq] = i
	}
	var unknown []int64
	dup := make(map[int64]bool, len(o.Duplicates))
	for _, seq := range o.Duplicates {
		dup[seq] = true
	}
	for _, seq := range o.Published {
		if i, ok := index[seq]; ok {
			status[i] = published
		} else {
			unknown = append(unknown, seq)
		}
	}
	for _, r := range o.Retry {
		if i, ok := index[r.Seq]; ok {
			status[i], delays[i] = retried, r.Delay
			if r.NotAttempted {
				notAttempted[i] = true
			}
		} else {
			unknown = append(unknown, r.Seq)
		}
	}
	for _, d := range o.Dead {
		if i, ok := index[d.Seq]; ok {
			status[i], reasons[i] = dead, d.Error
		} else {
			unknown = append(unknown, d.Seq)
		}
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	if b.finished {
		return nil
	}
	b.finished = true
	q.inflight--
	defer q.Nudge()
	if b.gen != q.gen {
		// A stale batch: the session it came from ended, and the new one reads its messages
		// again. Only release the keys.
		for _, l := range b.lanes {
			l.owned = false
			q.settle(l)
		}
		q.signal()
		return nil
	}
	now := time.Now()
	rest := make(map[*lane[T]][]*Entry[T])
	for i, e := range b.entries {
		switch status[i] {
		case published:
			if !b.checkpointed[e.Record.Seq] {
				q.published(e, dup[e.Record.Seq])
			}
		case dead:
			q.queueAck(Ack[T]{Entry: e, Kind: Dead, Reason: reasons[i]})
		case retried:
			if !notAttempted[i] {
				e.Record.Attempts++
			}
			rest[e.lane] = append(rest[e.lane], e)
			l := e.lane
			if until := now.Add(delays[i]); !l.delayed || until.After(l.until) {
				l.until = until
			}
			l.delayed = true
		default:
			rest[e.lane] = append(rest[e.lane], e)
		}
	}
	for _, l := range b.lanes {
		l.owned = false
		if r := rest[l]; len(r) > 0 {
			l.q = append(r, l.q...)
		}
		if l.delayed {
			if l.index >= 0 && l.index < q.delayed.Len() && q.delayed.lanes[l.index] == l {
				heap.Fix(&q.delayed, l.index)
			} else {
				heap.Push(&q.delayed, l)
			}
			continue
		}
		q.settle(l)
	}
	q.signal()
	if len(unknown) > 0 {
		return fmt.Errorf("finishing batch: messages %v are not in this batch", unknown)
	}
	return nil
}

// laneHeap orders lanes by less: the ready lanes by the arrival of their head message, the
// delayed ones by the end of their delay. A lane is in one of them at most.
type laneHeap[T any] struct {
	lanes []*lane[T]
	less  func(a, b *lane[T]) bool
}

func (h *laneHeap[T]) Len() int           { return len(h.lanes) }
func (h *laneHeap[T]) Less(i, j int) bool { return h.less(h.lanes[i], h.lanes[j]) }
func (h *laneHeap[T]) Swap(i, j int) {
	h.lanes[i], h.lanes[j] = h.lanes[j], h.lanes[i]
	h.lanes[i].index, h.lanes[j].index = i, j
}
func (h *laneHeap[T]) Push(x any) {
	l := x.(*lane[T])
	l.index = len(h.lanes)
	h.lanes = append(h.lanes, l)
}
func (h *laneHeap[T]) Pop() any {
	n := len(h.lanes) - 1
	l := h.lanes[n]
	h.lanes[n] = nil
	h.lanes = h.lanes[:n]
	l.index = -1
	return l
}
