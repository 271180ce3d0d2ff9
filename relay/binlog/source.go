package binlog

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	gomysql "github.com/go-sql-driver/mysql"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/mysql"
	"github.com/outboxgo/outbox/internal/sqlident"
	"github.com/outboxgo/outbox/relay"
)

// Source tails a MariaDB or MySQL binary log and hands the messages inserted into the outbox
// table to the relay. It implements relay.Source, relay.Runner and relay.Concurrent: Run drives
// the replication connection, Next and Finish serve the relay's workers.
type Source struct {
	cfg    Config
	repl   *gomysql.Config // the replication connection
	table  sqlident.Table
	store  *mysql.Store // deletes and dead letters
	logger *slog.Logger

	running atomic.Bool
	crashed chan struct{} // closed by tests to simulate a crash
	kill    atomic.Pointer[func()]

	mu sync.Mutex
	// gen counts replication sessions. Entries of an earlier session are stale: the new
	// session streams them again from the saved position.
	gen        uint64
	lanes      map[string]*lane // keyed lanes with queued, owned or delayed messages
	ready      readyHeap        // lanes with messages to give out now, oldest head first
	order      uint64           // arrival counter of entries
	readyMsgs  int
	delayed    delayHeap // lanes waiting for a retry delay
	txns       []*txn    // transactions read (and position markers), in commit order
	txnHead    int
	open       *txn // the transaction being read
	pending    int  // messages of this session read and not done
	pendBytes  int64
	peak       int
	inflight   int // batches handed out and not finished
	wake       chan struct{}
	waiting    int
	progress   chan struct{} // nudges the stream loop: something finished
	acks       []ackOp       // waiting for the database (deletes, dead letters)
	ackBusy    int
	ackWake    chan struct{}
	streaming  bool
	standby    bool
	reconnects int

	// The confirmed position: everything before it is done.
	confFile string
	confPos  uint32
	gtids    *gtidTracker
	urgent   bool // outbox messages were confirmed since the last save
	moved    bool // other traffic moved the position since the last save
	saved    Position
}

// lane is the queue of one key (or of one message without a key). At most one batch owns a
// lane at a time, which is what keeps per-key order.
type lane struct {
	key     string
	q       []*entry
	owned   bool // handed out in a batch
	queued  bool // in Source.ready
	rindex  int  // in the ready heap
	delayed bool // in Source.delayed
	until   time.Time
	index   int // in the delay heap
}

// entry is one message read from the binary log.
type entry struct {
	rec   outbox.Record
	gen   uint64
	txn   *txn
	lane  *lane
	size  int64
	order uint64 // arrival order
}

// txn is a transaction read from the stream, or a position marker (a rotation), complete with
// nothing pending. Its end may be confirmed once it and every transaction before it are done.
type txn struct {
	file     string // end coordinates, set at the commit
	pos      uint32
	gtid     gtidOf
	complete bool
	begun    bool // a multi-statement transaction (not a standalone statement)
	pending  int  // messages not done
	outbox   bool // held outbox rows
	self     bool // wrote the position table
	foreign  bool // changed anything else
}

var (
	_ relay.Source     = (*Source)(nil)
	_ relay.Runner     = (*Source)(nil)
	_ relay.Concurrent = (*Source)(nil)
)

// New validates cfg and returns a Source. It does not connect: Run does, and Setup can be
// called first to save the starting position before producers start.
func New(cfg Config) (*Source, error) {
	mc, t, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	store, err := mysql.New(context.Background(), mysql.Config{DB: cfg.DB, Table: cfg.Table, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	s := &Source{
		cfg:      cfg,
		repl:     mc,
		table:    t,
		store:    store,
		logger:   cfg.Logger.With(slog.String("source", cfg.Name)),
		crashed:  make(chan struct{}),
		lanes:    make(map[string]*lane),
		wake:     make(chan struct{}),
		progress: make(chan struct{}, 1),
		ackWake:  make(chan struct{}, 1),
	}
	return s, nil
}

// Concurrency implements relay.Concurrent.
func (s *Source) Concurrency() int { return s.cfg.Workers }

// Stats describes the source's state.
type Stats struct {
	// Pending is how many messages were read from the binary log and are not done yet
	// (queued, being published, waiting for a retry, or for their delete/dead-letter write).
	Pending int
	// PendingPeak is the highest Pending seen. It never exceeds MaxInFlight.
	PendingPeak int
	// PendingBytes is the payload bytes of the pending messages.
	PendingBytes int64
	// InFlightBatches are batches handed to workers and not finished.
	InFlightBatches int
	// Saved is the position last saved (or read at the start of the session).
	Saved Position
	// Streaming is true while the source holds the lock and reads the binary log.
	Streaming bool
	// Standby is true while another source of the same name holds the lock.
	Standby bool
	// Reconnects counts sessions that ended in an error.
	Reconnects int
}

// Stats returns a snapshot of the source's state.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{
		Pending:         s.pending,
		PendingPeak:     s.peak,
		PendingBytes:    s.pendBytes,
		InFlightBatches: s.inflight,
		Saved:           s.saved,
		Streaming:       s.streaming,
		Standby:         s.standby,
		Reconnects:      s.reconnects,
	}
}

// Next implements relay.Source. It blocks until messages are ready, waits up to BatchLinger
// for the batch to fill (only while other batches are being published), and returns up to
// BatchSize messages. A batch never shares a key with another unfinished batch, and holds a
// key's messages in commit order.
func (s *Source) Next(ctx context.Context) (relay.Batch, error) {
	var lingerUntil time.Time
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.mu.Lock()
		now := time.Now()
		s.promoteDue(now)
		if s.readyMsgs > 0 {
			// Linger only while other batches are out: when the sink is idle, waiting would
			// only add latency.
			if s.readyMsgs >= s.cfg.BatchSize || s.cfg.BatchLinger <= 0 || s.inflight == 0 ||
				(!lingerUntil.IsZero() && !now.Before(lingerUntil)) {
				b := s.take()
				s.mu.Unlock()
				return b, nil
			}
			if lingerUntil.IsZero() {
				lingerUntil = now.Add(s.cfg.BatchLinger)
			}
			s.mu.Unlock()
			if err := sleepCtx(ctx, lingerUntil.Sub(now)); err != nil {
				return nil, err
			}
			continue
		}
		lingerUntil = time.Time{}
		wake := s.wake
		s.waiting++
		var (
			due   <-chan time.Time
			timer *time.Timer
		)
		if len(s.delayed) > 0 {
			timer = time.NewTimer(s.delayed[0].until.Sub(now))
			due = timer.C
		}
		s.mu.Unlock()
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
		s.mu.Lock()
		s.waiting--
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// signal wakes the Next callers waiting for messages. Called with mu held.
func (s *Source) signal() {
	if s.waiting > 0 {
		close(s.wake)
		s.wake = make(chan struct{})
	}
}

// nudge tells the stream loop that something finished. Non-blocking.
func (s *Source) nudge() {
	select {
	case s.progress <- struct{}{}:
	default:
	}
}

// pushReady queues l for Next. Called with mu held.
func (s *Source) pushReady(l *lane) {
	l.queued = true
	heap.Push(&s.ready, l)
	s.readyMsgs += len(l.q)
}

// promoteDue moves lanes whose retry delay passed back to the ready queue. Called with mu held.
func (s *Source) promoteDue(now time.Time) {
	for len(s.delayed) > 0 && !s.delayed[0].until.After(now) {
		l := heap.Pop(&s.delayed).(*lane)
		l.delayed = false
		s.settle(l)
	}
}

// settle puts an unowned, undelayed lane where it belongs: ready when it has messages,
// forgotten when it has none. Called with mu held.
func (s *Source) settle(l *lane) {
	switch {
	case l.owned || l.delayed || l.queued:
	case len(l.q) > 0:
		s.pushReady(l)
	case l.key != "" && s.lanes[l.key] == l:
		delete(s.lanes, l.key)
	}
}

// maxPerLane bounds how many messages of one key go into one batch. The relay publishes a
// key's messages one wave (one broker round trip) after another, and a batch is finished (and
// its position confirmed) only after its last wave: a short lane keeps batches short.
const maxPerLane = 8

// take builds a batch from the ready lanes, oldest head first (the position advances only past
// the oldest unfinished message): its share of the lanes (so concurrent workers split the keys
// between them), up to maxPerLane messages of each and BatchSize in all. Called with mu held.
func (s *Source) take() *batch {
	b := &batch{src: s, gen: s.gen}
	lanes := len(s.ready)
	share := (lanes + s.cfg.Workers - 1) / s.cfg.Workers
	perLane := min(max(1, s.cfg.BatchSize/share), maxPerLane)
	room := s.cfg.BatchSize
	for room > 0 && len(b.lanes) < share && len(s.ready) > 0 {
		l := heap.Pop(&s.ready).(*lane)
		l.queued = false
		n := min(len(l.q), room, perLane)
		b.entries = append(b.entries, l.q[:n]...)
		clear(l.q[:n])
		l.q = l.q[n:]
		if len(l.q) == 0 {
			l.q = nil
		}
		s.readyMsgs -= len(l.q) + n
		room -= n
		// A lane that did not fit whole stays owned: its rest follows after Finish.
		l.owned = true
		b.lanes = append(b.lanes, l)
	}
	b.recs = make([]outbox.Record, len(b.entries))
	for i, e := range b.entries {
		b.recs[i] = e.rec
	}
	s.inflight++
	return b
}

// batch is a set of messages held by one worker.
type batch struct {
	src      *Source
	gen      uint64
	entries  []*entry
	lanes    []*lane
	recs     []outbox.Record
	finished bool
}

// Records implements relay.Batch.
func (b *batch) Records() []outbox.Record { return b.recs }

// Finish implements relay.Batch. Published messages are done once their rows are deleted
// (at once with KeepAcked), dead ones once they are in the dead-letter table; a retried
// message goes back to the head of its key's queue with attempts+1, and the key stays blocked
// until the delay passed; messages in no list go back to the head of their key's queue
// unchanged.
func (b *batch) Finish(_ context.Context, o dialect.Outcome) error {
	s := b.src
	const (
		none = iota
		published
		retried
		dead
	)
	status := make([]uint8, len(b.entries))
	delays := make([]time.Duration, len(b.entries))
	reasons := make(map[int]string)
	index := make(map[int64]int, len(b.entries))
	for i, e := range b.entries {
		index[e.rec.Seq] = i
	}
	var unknown []int64
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

	s.mu.Lock()
	defer s.mu.Unlock()
	if b.finished {
		return nil
	}
	b.finished = true
	s.inflight--
	defer s.nudge()
	if b.gen != s.gen {
		// A stale batch: the session it came from ended, and the new one streams its messages
		// again. Only release the keys.
		for _, l := range b.lanes {
			l.owned = false
			s.settle(l)
		}
		s.signal()
		return nil
	}
	now := time.Now()
	rest := make(map[*lane][]*entry)
	for i, e := range b.entries {
		switch status[i] {
		case published:
			if s.cfg.KeepAcked {
				s.done(e)
			} else {
				s.queueAck(ackOp{entry: e, kind: ackDelete})
			}
		case dead:
			s.queueAck(ackOp{entry: e, kind: ackDead, reason: reasons[i]})
		case retried:
			e.rec.Attempts++
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
			if l.index >= 0 && l.index < len(s.delayed) && s.delayed[l.index] == l {
				heap.Fix(&s.delayed, l.index)
			} else {
				heap.Push(&s.delayed, l)
			}
			continue
		}
		s.settle(l)
	}
	s.signal()
	if len(unknown) > 0 {
		return fmt.Errorf("finishing batch: messages %v are not in this batch", unknown)
	}
	return nil
}

// done marks e acknowledged or dead-lettered. Called with mu held.
func (s *Source) done(e *entry) {
	if e.gen != s.gen {
		return
	}
	e.txn.pending--
	s.pending--
	s.pendBytes -= e.size
	s.nudge()
}

// add queues a message read from the stream. Called with mu held.
func (s *Source) add(e *entry) {
	e.gen = s.gen
	s.order++
	e.order = s.order
	e.txn.pending++
	s.pending++
	s.pendBytes += e.size
	s.peak = max(s.peak, s.pending)
	if e.rec.Key == "" {
		l := &lane{q: []*entry{e}, index: -1}
		e.lane = l
		s.pushReady(l)
		s.signal()
		return
	}
	l := s.lanes[e.rec.Key]
	if l == nil {
		l = &lane{key: e.rec.Key, index: -1}
		s.lanes[e.rec.Key] = l
	}
	e.lane = l
	l.q = append(l.q, e)
	switch {
	case l.queued:
		s.readyMsgs++
	case !l.owned && !l.delayed:
		s.pushReady(l)
	}
	s.signal()
}

// overloaded reports whether the stream loop should stop reading: too many messages pending,
// or too many transactions waiting behind an unfinished one. Called with mu held.
func (s *Source) overloaded() bool {
	return s.pending >= s.cfg.MaxInFlight || (s.pending > 0 && s.pendBytes >= s.cfg.MaxInFlightBytes) ||
		len(s.txns)-s.txnHead >= s.maxTxns()
}

// maxTxns bounds the transactions queued behind an unfinished one (mostly other tables'
// transactions, which hold no message): their positions wait to be confirmed.
func (s *Source) maxTxns() int { return max(10*s.cfg.MaxInFlight, 10000) }

// confirm advances the confirmed position past every leading transaction that is done. Called
// with mu held.
func (s *Source) confirm() {
	for s.txnHead < len(s.txns) {
		t := s.txns[s.txnHead]
		if !t.complete || t.pending > 0 {
			break
		}
		s.pass(t)
		s.txns[s.txnHead] = nil
		s.txnHead++
	}
	if s.txnHead == len(s.txns) {
		s.txns, s.txnHead = s.txns[:0], 0
	} else if s.txnHead > 1024 && s.txnHead > len(s.txns)/2 {
		n := copy(s.txns, s.txns[s.txnHead:])
		clear(s.txns[n:])
		s.txns, s.txnHead = s.txns[:n], 0
	}
}

// pass moves the confirmed position past t. Called with mu held.
func (s *Source) pass(t *txn) {
	if t.file != "" {
		s.confFile, s.confPos = t.file, t.pos
	}
	if s.gtids != nil {
		s.gtids.add(t.gtid)
	}
	switch {
	case t.outbox:
		s.urgent = true
	case t.self && !t.foreign:
		// The source's own position write: saving past it would only write again.
	default:
		s.moved = true
	}
}

// confirmed is the confirmed position. Called with mu held.
func (s *Source) confirmed() Position {
	p := Position{File: s.confFile, Pos: s.confPos}
	if s.gtids != nil {
		p.GTID = s.gtids.String()
	}
	return p
}

// reset forgets everything read in the ended session: the next one streams it again from the
// saved position. Lanes owned by batches in flight stay, so their keys stay blocked until
// those batches finish. Called with mu held.
func (s *Source) reset() {
	s.gen++
	for k, l := range s.lanes {
		clear(l.q)
		l.q, l.queued, l.delayed = nil, false, false
		if !l.owned {
			delete(s.lanes, k)
		}
	}
	clear(s.ready)
	s.ready, s.readyMsgs = s.ready[:0], 0
	s.delayed = nil
	clear(s.txns)
	s.txns, s.txnHead, s.open = s.txns[:0], 0, nil
	s.pending, s.pendBytes = 0, 0
	s.urgent, s.moved = false, false
	kept := s.acks[:0]
	for _, op := range s.acks {
		if op.entry.gen == s.gen {
			kept = append(kept, op)
		}
	}
	clear(s.acks[len(kept):])
	s.acks = kept
}

// readyHeap orders ready lanes by the arrival of their head message.
type readyHeap []*lane

func (h readyHeap) Len() int           { return len(h) }
func (h readyHeap) Less(i, j int) bool { return h[i].q[0].order < h[j].q[0].order }
func (h readyHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].rindex, h[j].rindex = i, j
}
func (h *readyHeap) Push(x any) {
	l := x.(*lane)
	l.rindex = len(*h)
	*h = append(*h, l)
}
func (h *readyHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	l.rindex = -1
	return l
}

// delayHeap orders delayed lanes by the end of their delay.
type delayHeap []*lane

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h delayHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *delayHeap) Push(x any) {
	l := x.(*lane)
	l.index = len(*h)
	*h = append(*h, l)
}
func (h *delayHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	l.index = -1
	return l
}
