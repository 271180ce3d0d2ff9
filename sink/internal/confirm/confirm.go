// Package confirm keeps the per-message state of one pipelined publish, for sinks that send a
// batch without waiting between messages and learn each message's fate later from the broker
// (publisher confirms, PUBACKs): every message is unsent, pending (sent, awaiting its
// confirmation) or done (with its result), and Publish waits until all are done or gives up.
//
// Three parties share a Batch: Publish, which creates it and waits; the sender goroutine,
// which marks messages pending as it writes them; and the connection's reader, which
// confirms them. Every method is safe for concurrent use.
package confirm

import "sync"

const (
	unsent uint8 = iota
	pending
	done
)

// Batch is the bookkeeping of one Publish call.
type Batch struct {
	skip []bool // refused before sending; immutable once the sender runs

	mu        sync.Mutex
	res       []error
	state     []uint8
	pending   int  // messages in state pending
	sending   bool // the sender is still running
	abandoned bool // Publish returned: res is the caller's now
	closed    bool // done is closed
	done      chan struct{}
}

// New returns the bookkeeping of a batch whose results go to res, one per message.
func New(res []error) *Batch {
	return &Batch{
		skip:  make([]bool, len(res)),
		res:   res,
		state: make([]uint8, len(res)),
		done:  make(chan struct{}),
	}
}

// Refuse fails message i before anything is sent (a message the broker cannot take): the
// sender skips it. Call it before Start.
func (b *Batch) Refuse(i int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.skip[i] = true
	b.state[i] = done
	b.res[i] = err
}

// Skip reports whether message i was refused before sending.
func (b *Batch) Skip(i int) bool { return b.skip[i] }

// Sendable counts the messages not refused.
func (b *Batch) Sendable() int {
	n := 0
	for _, s := range b.skip {
		if !s {
			n++
		}
	}
	return n
}

// Start marks the sender as running: the batch is not done before EndSending, even when
// every message sent so far is confirmed.
func (b *Batch) Start() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sending = true
}

// EndSending marks the sender as finished.
func (b *Batch) EndSending() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sending = false
	b.maybeDone()
}

// Pending marks message i as sent and awaiting its confirmation. Call it before the write:
// the confirmation may arrive before the write returns.
func (b *Batch) Pending(i int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.state[i] = pending
	b.pending++
}

// Confirm settles pending message i with err (nil: the broker has it). A message that is not
// pending (already settled) is left alone.
func (b *Batch) Confirm(i int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.finish(i, err)
}

// Fail settles unsent message i with err without sending it.
func (b *Batch) Fail(i int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state[i] != unsent {
		return
	}
	b.state[i] = done
	if !b.abandoned {
		b.res[i] = err
	}
}

// Stop fails every message from index from on that was not sent: the sender gives up.
func (b *Batch) Stop(from int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failUnsent(from, err)
}

// Lost settles pending message i with err and fails the unsent rest with rest: the
// connection broke while i was being sent, and no later message may overtake it.
func (b *Batch) Lost(i int, err, rest error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.finish(i, err)
	b.failUnsent(i+1, rest)
}

// Done is closed once every message is settled and the sender has finished.
func (b *Batch) Done() <-chan struct{} { return b.done }

// Abandon gives up waiting: unsent messages fail with unsent and pending ones with pending,
// and the results are the caller's from now on (later confirmations no longer touch them).
// It reports whether any message was still pending.
func (b *Batch) Abandon(unsentErr, pendingErr error) (stuck bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, st := range b.state {
		switch {
		case st == unsent && !b.skip[i]:
			b.res[i] = unsentErr
		case st == pending:
			b.res[i] = pendingErr
		}
	}
	b.abandoned = true
	return b.pending > 0
}

func (b *Batch) finish(i int, err error) {
	if b.state[i] != pending {
		return
	}
	b.state[i] = done
	if !b.abandoned {
		b.res[i] = err
	}
	b.pending--
	b.maybeDone()
}

func (b *Batch) failUnsent(from int, err error) {
	for i := from; i < len(b.state); i++ {
		if b.state[i] == unsent && !b.skip[i] {
			b.state[i] = done
			if !b.abandoned {
				b.res[i] = err
			}
		}
	}
}

func (b *Batch) maybeDone() {
	if b.pending == 0 && !b.sending && !b.closed {
		b.closed = true
		close(b.done)
	}
}
