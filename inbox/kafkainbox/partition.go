package kafkainbox

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxgo/outbox/inbox"
)

// commitTimeout bounds one offset commit.
const commitTimeout = 10 * time.Second

// partition is the worker of one assigned partition: it applies the partition's records in
// offset order and commits the offset of the applied prefix.
type partition struct {
	c         *Consumer
	cl        *kgo.Client
	topic     string
	partition int32

	mu     sync.Mutex
	queue  []item
	paused bool
	wake   chan struct{} // cap 1: records queued

	// committed is set after the first successful commit since the assignment: records
	// delivered before it may have been delivered to a previous owner (Redelivered).
	committed atomic.Bool

	stopOnce sync.Once
	stopped  chan struct{} // closed by stopAndWait
	done     chan struct{} // closed when run returns
}

// item is a record on its way through the inbox.
type item struct {
	rec         *kgo.Record
	msg         inbox.Message
	bad         error     // the record does not decode: Reject it
	redelivered bool      // the next delivery is a redelivery (its handler failed)
	judged      bool      // whether a previous owner may have had it was decided (and counted)
	notBefore   time.Time // a retry waits until then
	done        bool      // acked: its offset may be committed
	retried     bool      // its handler failed: delivered again alone
}

func newPartition(c *Consumer, cl *kgo.Client, topic string, p int32) *partition {
	return &partition{c: c, cl: cl, topic: topic, partition: p,
		wake: make(chan struct{}, 1), stopped: make(chan struct{}), done: make(chan struct{})}
}

// push queues records (decoded) and returns how many are queued.
func (w *partition) push(recs []*kgo.Record) int {
	w.mu.Lock()
	for _, r := range recs {
		it := item{rec: r}
		it.msg, it.bad = w.c.decode(r)
		w.queue = append(w.queue, it)
	}
	n := len(w.queue)
	if n >= w.c.cfg.MaxQueued {
		w.paused = true
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return n
}

// take returns the queued items, resuming the partition's fetching if it was paused.
func (w *partition) take() []item {
	w.mu.Lock()
	q := w.queue
	w.queue = nil
	resume := w.paused
	w.paused = false
	w.mu.Unlock()
	if resume {
		w.cl.ResumeFetchPartitions(map[string][]int32{w.topic: {w.partition}})
	}
	return q
}

func (w *partition) stopAndWait() {
	w.stopOnce.Do(func() { close(w.stopped) })
	<-w.done
}

func (w *partition) run(ctx context.Context, h inbox.Handler) {
	defer close(w.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.stopped:
			return
		case <-w.wake:
		}
		if items := w.take(); len(items) > 0 {
			w.process(ctx, h, items)
		}
	}
}

// wait sleeps d, or until ctx ends or the worker is stopped (false then).
func (w *partition) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return w.running(ctx)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-w.stopped:
		return false
	}
}

func (w *partition) running(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-w.stopped:
		return false
	default:
		return true
	}
}

// process applies items in offset order. A record whose handler failed is delivered
// again in place after its delay, and the partition waits for it: its offset cannot be
// committed past it. It returns when every item is acked, or when the worker stops (the
// unacked items are not committed: the partition's next owner, or this one after a
// restart, reads them again).
func (w *partition) process(ctx context.Context, h inbox.Handler, items []item) {
	committed := -1 // index of the last item whose offset is committed
	defer func() { w.commit(ctx, items, &committed) }()
	head := 0
	for {
		for head < len(items) && items[head].done {
			head++
		}
		if head == len(items) {
			return
		}
		if d := time.Until(items[head].notBefore); d > 0 {
			w.commit(ctx, items, &committed) // what is applied is not redone by the next owner
			if !w.wait(ctx, d) {
				return
			}
		}
		if !w.running(ctx) {
			return
		}
		if items[head].bad != nil {
			if w.reject(ctx, &items[head]) {
				items[head].done = true
			} else {
				items[head].notBefore = time.Now().Add(w.c.cfg.ErrorDelay)
			}
			continue
		}
		// The chunk: up to Batch decodable items from head, in order, that are due.
		now := time.Now()
		var idx []int
		limit := w.c.cfg.Batch
		if items[head].retried {
			// A retry alone: in a batch, a failing handler would run twice (the batch's
			// transaction, then the inbox's one-by-one pass).
			limit = 1
		}
		for i := head; i < len(items) && len(idx) < limit; i++ {
			it := &items[i]
			if it.done {
				continue
			}
			if it.bad != nil || it.notBefore.After(now) {
				break
			}
			idx = append(idx, i)
		}
		first := !w.committed.Load()
		w.deliver(ctx, h, items, idx)
		if first {
			w.commit(ctx, items, &committed) // from now on, records are first deliveries
		} else {
			w.commitEvery(ctx, items, &committed)
		}
	}
}

// deliver runs the chunk idx of items through the inbox and updates the items.
func (w *partition) deliver(ctx context.Context, h inbox.Handler, items []item, idx []int) {
	ds := make([]inbox.Delivery, len(idx))
	for j, i := range idx {
		// Before the partition's first commit since its assignment, a previous owner may
		// have had the record.
		ds[j] = inbox.Delivery{Message: items[i].msg, Redelivered: items[i].redelivered || !items[i].judged && !w.committed.Load()}
	}
	var (
		outs []inbox.Outcome
		err  error
	)
	if len(ds) == 1 {
		var o inbox.Outcome
		o, err = w.c.in.Deliver(ctx, ds[0], h)
		outs = []inbox.Outcome{o}
	} else {
		outs, err = w.c.in.DeliverBatch(ctx, ds, h)
	}
	now := time.Now()
	if err != nil {
		if ctx.Err() == nil {
			w.c.log.WarnContext(ctx, "kafkainbox: the inbox failed; delivering again after a pause",
				"topic", w.topic, "partition", w.partition, "offset", items[idx[0]].rec.Offset,
				"records", len(idx), "pause", w.c.cfg.ErrorDelay, "error", err)
		}
		for _, i := range idx {
			items[i].notBefore = now.Add(w.c.cfg.ErrorDelay)
		}
		return
	}
	for j, i := range idx {
		o, it := outs[j], &items[i]
		it.redelivered, it.judged = ds[j].Redelivered, true
		if !o.Retry {
			it.done = true
			continue
		}
		it.notBefore = now.Add(o.Delay)
		if errors.Is(o.Err, inbox.ErrKeyBlocked) {
			// Not run: its possible earlier delivery was counted (if it was redelivered)
			// and the handler did not get it, so its next delivery counts nothing new.
			it.redelivered = false
		} else {
			it.redelivered = true // the failure was counted; the next delivery counts again
			it.retried = true
			w.c.log.WarnContext(ctx, "kafkainbox: handler failed; retrying in place",
				"topic", w.topic, "partition", w.partition, "offset", it.rec.Offset, "message_id", it.msg.ID,
				"attempt", o.Attempt, "delay", o.Delay, "error", o.Err)
		}
	}
}

// commitEvery commits the applied prefix when the last commit is far behind, so that a
// long poll is not redone wholesale after a crash.
func (w *partition) commitEvery(ctx context.Context, items []item, committed *int) {
	if prefix(items)-*committed >= 1000 {
		w.commit(ctx, items, committed)
	}
}

// prefix is the index of the last item of the acked prefix of items (-1: none).
func prefix(items []item) int {
	i := 0
	for i < len(items) && items[i].done {
		i++
	}
	return i - 1
}

// commit commits the offset after the acked prefix of items, if it advanced.
func (w *partition) commit(ctx context.Context, items []item, committed *int) {
	p := prefix(items)
	if p <= *committed {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := w.cl.CommitRecords(cctx, items[p].rec); err != nil {
		w.c.log.WarnContext(ctx, "kafkainbox: committing the offset failed; the records may be delivered again (as duplicates)",
			"topic", w.topic, "partition", w.partition, "offset", items[p].rec.Offset+1, "error", err)
		return
	}
	*committed = p
	w.committed.Store(true)
}

// reject records an undecodable record in the dead letters. It reports whether it did.
func (w *partition) reject(ctx context.Context, it *item) bool {
	m := it.msg
	brokerID := "kafka:" + w.topic + ":" + strconv.Itoa(int(w.partition)) + ":" + strconv.FormatInt(it.rec.Offset, 10)
	if m.ID == "" {
		m.ID = brokerID
	}
	err := w.c.in.Reject(ctx, m, it.bad)
	if errors.Is(err, inbox.ErrInvalidMessage) { // an id or key the inbox cannot store
		m.ID, m.Key, m.Position = brokerID, "", 0
		err = w.c.in.Reject(ctx, m, it.bad)
	}
	if err != nil {
		if ctx.Err() == nil {
			w.c.log.WarnContext(ctx, "kafkainbox: recording an unreadable record failed; trying again after a pause",
				"topic", w.topic, "partition", w.partition, "offset", it.rec.Offset, "error", err)
		}
		return false
	}
	w.c.log.WarnContext(ctx, "kafkainbox: unreadable record moved to the dead letters",
		"topic", w.topic, "partition", w.partition, "offset", it.rec.Offset, "message_id", m.ID, "reason", it.bad)
	return true
}
