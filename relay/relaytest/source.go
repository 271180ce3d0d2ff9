package relaytest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
)

// DefaultBatchSize is the most messages a batch of a Source holds unless configured.
const DefaultBatchSize = 100

// SourceConfig configures a Source. The zero value is ready to use.
type SourceConfig struct {
	// BatchSize is the most messages one batch holds. Default DefaultBatchSize.
	BatchSize int
	// Concurrency is what the Source reports as a relay.Concurrent: a relay over it runs at
	// least that many workers, and refuses fewer. Default 0: the relay's Workers decide.
	Concurrency int
}

// Source is an in-memory relay.Source that claims the way the outbox stores do: a batch holds
// messages in sequence order until it is finished, and never a message of a key whose earlier
// message is held by another batch or waits for its retry (the key is blocked behind its
// head; other keys go on). Finishing a batch applies the outcome as a store applies it:
//
//   - Published messages leave the backlog (see Published; Duplicates are counted).
//   - Retry gives a message attempts+1 (unchanged when NotAttempted), its error, and makes it
//     claimable again after Delay.
//   - Dead moves a message to the dead letters (see DeadLetters) with attempts+1 and its
//     reason.
//   - Messages in none of the lists are released unchanged.
//
// An outcome naming a message the batch does not hold (or one message twice), or carrying an
// error text that is not valid UTF-8 or holds a NUL byte (which PostgreSQL's text columns
// refuse), is refused whole: Finish returns an error, nothing is recorded and the batch's
// messages are released unchanged, as when a store's transaction fails. SetFinishError scripts
// such failures.
//
// Several relays (or workers) may share a Source: concurrent batches never share a key. A
// Source is safe for concurrent use. Create it with NewSource.
type Source struct {
	cfg SourceConfig

	mu        sync.Mutex
	seq       int64
	backlog   []*entry // pending messages in sequence order, held ones included
	bySeq     map[int64]*entry
	dead      []DeadLetter
	deadSeq   int64
	published []outbox.Record
	finishErr func(outbox.Outcome) error
	stats     Stats
	changed   chan struct{} // closed and replaced when something may have become claimable
}

type entry struct {
	rec       outbox.Record
	available time.Time
	lastError string
	batch     *batch // holding it, nil when not held
}

// Pending is a message of a Source's backlog as the source keeps it.
type Pending struct {
	outbox.Record
	// AvailableAt is when the message becomes claimable (after a retry's delay).
	AvailableAt time.Time
	// LastError is the error of its last retry, "" before any.
	LastError string
	// Held says a batch not finished yet holds it.
	Held bool
}

// DeadLetter is a message a Source moved to its dead letters.
type DeadLetter struct {
	// ID numbers the dead letters from 1, for RetryDeadLetters.
	ID int64
	// Record is the message; Attempts counts the attempt that sent it here.
	Record outbox.Record
	// Reason is the outcome's error text.
	Reason string
}

// Stats counts what happened to a Source's messages and batches.
type Stats struct {
	Pending     int // in the backlog, held ones included
	Held        int // held by unfinished batches
	DeadLetters int
	Published   int // recorded as published
	Duplicates  int // of those, reported by the broker as duplicates (outbox.Outcome.Duplicates)
	Retries     int // Retry entries recorded (NotAttempted ones included)
	Claims      int // batches handed out
	Finishes    int // Finish calls that recorded their outcome
	// FailedFinishes counts Finish calls that recorded nothing: a refused outcome or a
	// scripted failure (SetFinishError).
	FailedFinishes int
}

// NewSource returns an empty Source.
func NewSource(cfg SourceConfig) *Source {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	return &Source{cfg: cfg, bySeq: map[int64]*entry{}, changed: make(chan struct{})}
}

// Concurrency implements relay.Concurrent with SourceConfig.Concurrency.
func (s *Source) Concurrency() int { return s.cfg.Concurrency }

// Enqueue appends msgs to the backlog, in order, as one committed transaction would, and
// returns their records: each gets a sequence number, a creation time and, when it has none,
// a new message id (outbox.NewID, written back into msgs as outbox.Enqueue does). The
// messages are not validated.
func (s *Source) Enqueue(msgs ...outbox.Message) []outbox.Record {
	now := time.Now()
	out := make([]outbox.Record, len(msgs))
	s.mu.Lock()
	defer s.mu.Unlock()
	var zero outbox.Message
	for i, m := range msgs {
		if m.ID == zero.ID {
			m.ID = outbox.NewID()
			msgs[i].ID = m.ID
		}
		s.seq++
		rec := outbox.Record{Message: m, Seq: s.seq, CreatedAt: now}
		s.push(&entry{rec: rec, available: now})
		out[i] = rec
	}
	s.notify()
	return out
}

// push appends e, whose sequence number is the highest, to the backlog.
func (s *Source) push(e *entry) {
	s.backlog = append(s.backlog, e)
	s.bySeq[e.rec.Seq] = e
}

// notify wakes the callers of Next waiting for something claimable. Call with s.mu held.
func (s *Source) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Next implements relay.Source: it returns a batch of up to BatchSize claimable messages,
// waiting (until ctx ends) while there are none.
func (s *Source) Next(ctx context.Context) (relay.Batch, error) {
	for {
		s.mu.Lock()
		b, next := s.claim(time.Now())
		changed := s.changed
		s.mu.Unlock()
		if b != nil {
			return b, nil
		}
		var due <-chan time.Time
		var t *time.Timer
		if !next.IsZero() {
			t = time.NewTimer(time.Until(next))
			due = t.C
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-due:
		}
		if t != nil {
			t.Stop()
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// claim takes the claimable messages into a new batch, or returns nil and the earliest time a
// message waiting for its retry becomes claimable (zero if none).
func (s *Source) claim(now time.Time) (*batch, time.Time) {
	var (
		b       *batch
		next    time.Time
		blocked map[string]bool
	)
	block := func(key string) {
		if key == "" {
			return
		}
		if blocked == nil {
			blocked = map[string]bool{}
		}
		blocked[key] = true
	}
	for _, e := range s.backlog {
		if b != nil && len(b.recs) == s.cfg.BatchSize {
			break
		}
		k := e.rec.Key
		if k != "" && blocked[k] {
			continue
		}
		switch {
		case e.batch != nil:
			block(k) // held elsewhere: the key's later messages wait for it
		case e.available.After(now):
			block(k) // backing off: so does the rest of its key
			if next.IsZero() || e.available.Before(next) {
				next = e.available
			}
		default:
			if b == nil {
				b = &batch{src: s, held: map[int64]*entry{}}
			}
			e.batch = b
			b.recs = append(b.recs, e.rec)
			b.held[e.rec.Seq] = e
		}
	}
	if b != nil {
		s.stats.Claims++
	}
	return b, next
}

// batch is a set of messages a Source handed out, held until Finish.
type batch struct {
	src  *Source
	recs []outbox.Record
	held map[int64]*entry
	done bool
}

// Records implements relay.Batch. The records are copies: changing them changes nothing in
// the source.
func (b *batch) Records() []outbox.Record { return b.recs }

// Finish implements relay.Batch.
func (b *batch) Finish(_ context.Context, o outbox.Outcome) error {
	return b.src.finish(b, o)
}

func (s *Source) finish(b *batch, o outbox.Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.done {
		return errors.New("relaytest: batch finished twice")
	}
	b.done = true
	defer func() {
		for _, e := range b.held {
			if e.batch == b {
				e.batch = nil
			}
		}
		s.notify()
	}()
	if err := s.check(b, o); err != nil {
		s.stats.FailedFinishes++
		return fmt.Errorf("relaytest: outcome refused, nothing recorded: %w", err)
	}
	if s.finishErr != nil {
		if err := s.finishErr(o); err != nil {
			s.stats.FailedFinishes++
			return err
		}
	}
	now := time.Now()
	dup := make(map[int64]bool, len(o.Duplicates))
	for _, seq := range o.Duplicates {
		dup[seq] = true
	}
	gone := map[int64]bool{}
	for _, seq := range o.Published {
		e := b.held[seq]
		gone[seq] = true
		s.published = append(s.published, e.rec)
		s.stats.Published++
		if dup[seq] {
			s.stats.Duplicates++
		}
	}
	for _, r := range o.Retry {
		e := b.held[r.Seq]
		if !r.NotAttempted {
			e.rec.Attempts++
		}
		e.available = now.Add(r.Delay)
		e.lastError = r.Error
		s.stats.Retries++
	}
	for _, d := range o.Dead {
		e := b.held[d.Seq]
		gone[d.Seq] = true
		rec := e.rec
		rec.Attempts++
		s.deadSeq++
		s.dead = append(s.dead, DeadLetter{ID: s.deadSeq, Record: rec, Reason: d.Error})
	}
	if len(gone) > 0 {
		s.backlog = slices.DeleteFunc(s.backlog, func(e *entry) bool { return gone[e.rec.Seq] })
		for seq := range gone {
			delete(s.bySeq, seq)
		}
	}
	s.stats.Finishes++
	return nil
}

// check returns why o cannot be recorded for b, or nil.
func (s *Source) check(b *batch, o outbox.Outcome) error {
	if err := o.CheckHeld(func(seq int64) bool { return b.held[seq] != nil }); err != nil {
		return err
	}
	named := map[int64]bool{}
	twice := func(seq int64) error {
		if named[seq] {
			return fmt.Errorf("message %d is in the outcome twice", seq)
		}
		named[seq] = true
		return nil
	}
	for _, seq := range o.Published {
		if err := twice(seq); err != nil {
			return err
		}
	}
	for _, seq := range o.Duplicates {
		if !slices.Contains(o.Published, seq) {
			return fmt.Errorf("duplicate %d is not published", seq)
		}
	}
	for _, r := range o.Retry {
		if err := twice(r.Seq); err != nil {
			return err
		}
		if err := storable(r.Error); err != nil {
			return fmt.Errorf("retry of message %d: %w", r.Seq, err)
		}
	}
	for _, d := range o.Dead {
		if err := twice(d.Seq); err != nil {
			return err
		}
		if err := storable(d.Error); err != nil {
			return fmt.Errorf("dead letter %d: %w", d.Seq, err)
		}
	}
	return nil
}

// storable refuses text a PostgreSQL text column refuses.
func storable(s string) error {
	switch {
	case !utf8.ValidString(s):
		return fmt.Errorf("error text %.40q is not valid UTF-8", s)
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("error text %.40q holds a NUL byte", s)
	}
	return nil
}

// SetFinishError scripts failing Finish calls: while f is set, a Finish whose outcome f
// returns an error for fails with that error, recording nothing and releasing the batch's
// messages unchanged (as when the database refuses the outcome's transaction: a dead-letter
// table that refuses inserts, a session killed between the publish and the delete). nil
// removes the script.
func (s *Source) SetFinishError(f func(o outbox.Outcome) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finishErr = f
}

// Reschedule makes the pending message seq claimable at at (as a retry's delay does) and
// reports whether it is pending.
func (s *Source) Reschedule(seq int64, at time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.bySeq[seq]
	if e == nil {
		return false
	}
	e.available = at
	s.notify()
	return true
}

// SetAttempts sets the recorded attempts of the pending message seq (as if earlier relays
// had tried it) and reports whether it is pending.
func (s *Source) SetAttempts(seq int64, attempts int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.bySeq[seq]
	if e == nil {
		return false
	}
	e.rec.Attempts = attempts
	return true
}

// Backlog returns the pending messages, in sequence order.
func (s *Source) Backlog() []Pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Pending, len(s.backlog))
	for i, e := range s.backlog {
		out[i] = pending(e)
	}
	return out
}

// Get returns the pending message seq, and whether it is pending.
func (s *Source) Get(seq int64) (Pending, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.bySeq[seq]
	if e == nil {
		return Pending{}, false
	}
	return pending(e), true
}

func pending(e *entry) Pending {
	return Pending{Record: e.rec, AvailableAt: e.available, LastError: e.lastError, Held: e.batch != nil}
}

// Published returns the messages recorded as published, in the order their outcomes were
// recorded (a key's messages in its order, if the relay kept it).
func (s *Source) Published() []outbox.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.published)
}

// PublishedByKey returns the published messages of each key, in the order they were
// recorded; unkeyed messages are under "".
func (s *Source) PublishedByKey() map[string][]outbox.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]outbox.Record{}
	for _, r := range s.published {
		out[r.Key] = append(out[r.Key], r)
	}
	return out
}

// DeadLetters returns the dead letters, oldest first.
func (s *Source) DeadLetters() []DeadLetter {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.dead)
}

// RetryDeadLetters moves the dead letters with the given ids (all of them when none is given)
// back to the backlog, behind everything pending, with their message ids and attempts 0, in
// dead-letter order; it returns how many it moved.
func (s *Source) RetryDeadLetters(ids ...int64) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var kept []DeadLetter
	n := 0
	for _, d := range s.dead {
		if len(ids) > 0 && !slices.Contains(ids, d.ID) {
			kept = append(kept, d)
			continue
		}
		rec := d.Record
		s.seq++
		rec.Seq, rec.Attempts = s.seq, 0
		s.push(&entry{rec: rec, available: time.Now()})
		n++
	}
	s.dead = kept
	if n > 0 {
		s.notify()
	}
	return n
}

// Stats returns the source's counts.
func (s *Source) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Pending = len(s.backlog)
	st.DeadLetters = len(s.dead)
	for _, e := range s.backlog {
		if e.batch != nil {
			st.Held++
		}
	}
	return st
}

var (
	_ relay.Source     = (*Source)(nil)
	_ relay.Concurrent = (*Source)(nil)
)
