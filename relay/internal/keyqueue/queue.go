// Package keyqueue holds what a log-tailing source (relay/wal, relay/binlog) has read from its
// log and not yet finished: one queue (lane) per message key, handed out to the relay's
// workers oldest first, one batch per key at a time; retries held in memory until their delay
// passed; the acknowledgements the database must apply (deleting rows, writing dead letters)
// batched by an acker; and the transactions read, in log order, so that the source confirms
// its position only past the prefix whose messages are all done.
//
// The queue knows nothing of the log: a transaction carries the source's own record of it (a
// type parameter: its end position, and whatever the source needs to confirm past it or to
// acknowledge its messages), and the database writes are the source's apply function.
//
// A Queue shares its source's mutex. Next, a batch's Finish and the acker take it; every
// other method must be called with it held, so that the source updates its own bookkeeping
// (the confirmed position) in the same critical section.
package keyqueue

import (
	"log/slog"
	"sync"
	"time"

	"github.com/outboxgo/outbox"
)

// Config configures a Queue. Every field must be set (the sources fill in their defaults).
type Config struct {
	// BatchSize is the most messages in one batch.
	BatchSize int
	// BatchLinger is how long Next waits for a batch to fill while other batches are out;
	// zero or negative means no wait.
	BatchLinger time.Duration
	// Workers is how many batches are handed out at once: each batch takes its share of the
	// ready keys.
	Workers int
	// MaxInFlight and MaxInFlightBytes bound the messages (and their payload bytes) read and
	// not done: beyond them Overloaded reports true.
	MaxInFlight      int
	MaxInFlightBytes int64
	// DeleteAcked: a published message is done once its row is deleted (an acknowledgement
	// for apply), not at once.
	DeleteAcked bool
	// Logger receives the acker's warnings.
	Logger *slog.Logger
}

// Queue is the in-memory queue of one source. T is the source's record of a transaction.
type Queue[T any] struct {
	cfg Config
	mu  *sync.Mutex

	// gen counts the source's sessions. Entries of an earlier session are stale: the new
	// session reads them again from the confirmed position.
	gen       uint64
	lanes     map[string]*lane[T] // keyed lanes with queued, owned or delayed messages
	ready     laneHeap[T]         // lanes with messages to give out now, oldest head first
	order     uint64              // arrival counter of entries
	readyMsgs int
	delayed   laneHeap[T] // lanes waiting for a retry delay, the soonest due first
	txns      []*Txn[T]   // transactions read (and position markers), in log order
	txnHead   int
	open      *Txn[T] // the transaction being read
	pending   int     // messages of this session read and not done
	pendBytes int64
	peak      int
	inflight  int           // batches handed out and not finished
	wake      chan struct{} // closed (and replaced) when Next waiters should look again
	waiting   int
	progress  chan struct{} // nudges the source's stream loop: something finished
	acks      []Ack[T]      // waiting for the database (deletes, dead letters)
	ackBusy   int           // acknowledgements taken by the acker and not yet applied
	ackWake   chan struct{}
}

// Txn is a transaction read from the log, or a position marker (complete with nothing
// pending). Its end may be confirmed once it and every transaction before it are done.
type Txn[T any] struct {
	// Info is the source's record of the transaction: its end position and the like.
	Info     T
	complete bool
	pending  int // messages not done
}

// Entry is one message read from the log.
type Entry[T any] struct {
	Record outbox.Record
	Txn    *Txn[T]
	gen    uint64
	lane   *lane[T]
	size   int64
	order  uint64 // arrival order
}

// New returns an empty queue guarded by mu, the source's mutex.
func New[T any](cfg Config, mu *sync.Mutex) *Queue[T] {
	return &Queue[T]{
		cfg:      cfg,
		mu:       mu,
		lanes:    make(map[string]*lane[T]),
		ready:    laneHeap[T]{less: func(a, b *lane[T]) bool { return a.q[0].order < b.q[0].order }},
		delayed:  laneHeap[T]{less: func(a, b *lane[T]) bool { return a.until.Before(b.until) }},
		wake:     make(chan struct{}),
		progress: make(chan struct{}, 1),
		ackWake:  make(chan struct{}, 1),
	}
}

// Stats describes a queue.
type Stats struct {
	// Pending is how many messages were read and are not done yet (queued, being published,
	// waiting for a retry, or for their acknowledgement to be applied).
	Pending int
	// PendingPeak is the highest Pending seen.
	PendingPeak int
	// PendingBytes is the payload bytes of the pending messages.
	PendingBytes int64
	// InFlightBatches are batches handed out and not finished.
	InFlightBatches int
}

// Stats returns a snapshot of the queue's state.
func (q *Queue[T]) Stats() Stats {
	return Stats{Pending: q.pending, PendingPeak: q.peak, PendingBytes: q.pendBytes, InFlightBatches: q.inflight}
}

// Progress receives a value when something finished (a batch, a message, a failed
// acknowledgement round): a stream loop waiting for room, or for the batches in flight, looks
// again. It needs no lock.
func (q *Queue[T]) Progress() <-chan struct{} { return q.progress }

// Nudge sends on Progress, without blocking. It needs no lock.
func (q *Queue[T]) Nudge() {
	select {
	case q.progress <- struct{}{}:
	default:
	}
}

// Idle reports whether no batch is in flight and no acknowledgement waits for the database:
// what a graceful stop waits for.
func (q *Queue[T]) Idle() bool { return q.inflight == 0 && len(q.acks) == 0 && q.ackBusy == 0 }

// Drain waits until the queue is Idle, or timeout passed, calling tick every interval
// meanwhile (the source confirms what finished so far): what a graceful stop does before its
// final confirmation. It returns tick's error, or aborted once abort is closed. It takes the
// lock.
func (q *Queue[T]) Drain(abort <-chan struct{}, aborted error, timeout, interval time.Duration, tick func() error) error {
	deadline := time.Now().Add(timeout)
	next := time.Now().Add(interval)
	for {
		q.mu.Lock()
		idle := q.Idle()
		q.mu.Unlock()
		now := time.Now()
		if idle || !now.Before(deadline) {
			return nil
		}
		if !now.Before(next) {
			if err := tick(); err != nil {
				return err
			}
			next = now.Add(interval)
		}
		t := time.NewTimer(min(time.Until(deadline), time.Until(next)))
		select {
		case <-q.progress:
		case <-abort:
			t.Stop()
			return aborted
		case <-t.C:
		}
		t.Stop()
	}
}

// Overloaded reports whether the source should stop reading: MaxInFlight messages, or
// MaxInFlightBytes of payload, are pending.
func (q *Queue[T]) Overloaded() bool {
	return q.pending >= q.cfg.MaxInFlight || (q.pending > 0 && q.pendBytes >= q.cfg.MaxInFlightBytes)
}

// Begin opens a transaction: the messages read until End belong to it.
func (q *Queue[T]) Begin(info T) *Txn[T] {
	t := &Txn[T]{Info: info}
	q.open = t
	q.txns = append(q.txns, t)
	return t
}

// Open returns the open transaction, or nil.
func (q *Queue[T]) Open() *Txn[T] { return q.open }

// End completes the open transaction and returns it (nil when none is open). The source
// records its end position in it.
func (q *Queue[T]) End() *Txn[T] {
	t := q.open
	if t != nil {
		t.complete = true
		q.open = nil
	}
	return t
}

// Append adds a complete transaction: a position marker, or a unit of its own (a message
// written outside any transaction, a statement).
func (q *Queue[T]) Append(info T) *Txn[T] {
	t := &Txn[T]{Info: info, complete: true}
	q.txns = append(q.txns, t)
	return t
}

// Last returns the last transaction not yet confirmed past, or nil.
func (q *Queue[T]) Last() *Txn[T] {
	if n := len(q.txns); n > q.txnHead {
		return q.txns[n-1]
	}
	return nil
}

// Unconfirmed is the number of transactions not yet confirmed past (the open one included).
func (q *Queue[T]) Unconfirmed() int { return len(q.txns) - q.txnHead }

// Confirm passes every leading transaction that is complete and done, in order: pass moves
// the source's confirmed position past it.
func (q *Queue[T]) Confirm(pass func(*T)) {
	for q.txnHead < len(q.txns) {
		t := q.txns[q.txnHead]
		if !t.complete || t.pending > 0 {
			break
		}
		pass(&t.Info)
		q.txns[q.txnHead] = nil
		q.txnHead++
	}
	if q.txnHead == len(q.txns) {
		q.txns, q.txnHead = q.txns[:0], 0
	} else if q.txnHead > 1024 && q.txnHead > len(q.txns)/2 {
		n := copy(q.txns, q.txns[q.txnHead:])
		clear(q.txns[n:])
		q.txns, q.txnHead = q.txns[:n], 0
	}
}

// Add queues a message of transaction t.
func (q *Queue[T]) Add(t *Txn[T], rec outbox.Record) {
	e := q.count(t, rec)
	if rec.Key == "" {
		l := &lane[T]{q: []*Entry[T]{e}, index: -1}
		e.lane = l
		q.pushReady(l)
		q.signal()
		return
	}
	l := q.lanes[rec.Key]
	if l == nil {
		l = &lane[T]{key: rec.Key, index: -1}
		q.lanes[rec.Key] = l
	}
	e.lane = l
	l.q = append(l.q, e)
	switch {
	case l.queued:
		q.readyMsgs++
	case !l.owned && !l.delayed:
		q.pushReady(l)
	}
	q.signal()
}

// Reject counts a message of transaction t that cannot be published (it could not be
// decoded) and sends it straight to the dead letters with reason.
func (q *Queue[T]) Reject(t *Txn[T], rec outbox.Record, reason string) {
	q.queueAck(Ack[T]{Entry: q.count(t, rec), Kind: Dead, Reason: reason})
}

// count makes rec a pending entry of t.
func (q *Queue[T]) count(t *Txn[T], rec outbox.Record) *Entry[T] {
	e := &Entry[T]{Record: rec, Txn: t, gen: q.gen, size: int64(len(rec.Payload))}
	q.order++
	e.order = q.order
	t.pending++
	q.pending++
	q.pendBytes += e.size
	q.peak = max(q.peak, q.pending)
	return e
}

// done marks e acknowledged or dead-lettered.
func (q *Queue[T]) done(e *Entry[T]) {
	if e.gen != q.gen {
		return
	}
	e.Txn.pending--
	q.pending--
	q.pendBytes -= e.size
	q.Nudge()
}

// Reset forgets everything read in the session that ended: the next one reads it again from
// the confirmed position. Lanes owned by batches in flight stay, so their keys stay blocked
// until those batches finish; acknowledgements of the old session are dropped.
func (q *Queue[T]) Reset() {
	q.gen++
	for k, l := range q.lanes {
		clear(l.q)
		l.q, l.queued, l.delayed = nil, false, false
		if !l.owned {
			delete(q.lanes, k)
		}
	}
	clear(q.ready.lanes)
	q.ready.lanes, q.readyMsgs = q.ready.lanes[:0], 0
	q.delayed.lanes = nil
	clear(q.txns)
	q.txns, q.txnHead, q.open = q.txns[:0], 0, nil
	q.pending, q.pendBytes = 0, 0
	kept := q.acks[:0]
	for _, a := range q.acks {
		if a.Entry.gen == q.gen {
			kept = append(kept, a)
		}
	}
	clear(q.acks[len(kept):])
	q.acks = kept
}
