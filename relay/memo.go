package relay

import (
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
)

// maxUnrecorded bounds the outcomes a relay remembers while the database refuses them (about
// 100 bytes each). Past it, a message whose outcome could not be recorded is published again
// when it is claimed again: a duplicate, never a loss.
const maxUnrecorded = 100_000

// unrecorded remembers outcomes that were decided but could not be written (a failed Finish:
// the claim's transaction is gone and its rows are claimable again, unchanged). When such a
// message is claimed again, its remembered outcome is applied instead of publishing it again,
// so however long the bookkeeping fails, a message is published once by this relay.
type unrecorded struct {
	mu   sync.Mutex
	m    map[int64]memo
	kick chan struct{} // a published outcome was remembered (Relay.recordRemembered)
	// anyFailed: an entry may have failed set (hasPublished's scan clears it when none has),
	// so that the recorder does not scan the entries of every batch in flight.
	anyFailed bool
}

type memoKind uint8

const (
	memoPublished memoKind = iota + 1
	memoRetry
	memoDead
)

type memo struct {
	id   uuid.UUID // the row's message id: a reused sequence number is not the same message
	kind memoKind
	dup  bool // published, and the broker said it was a duplicate
	// failed: a Finish failed to record it (else its Finish is in flight): the recorder's
	// to record
	failed bool
	until  time.Time // retry: when the message is due again
	err    string    // retry or dead: the error to record
}

// remember records the outcome o of recs before Finish writes it (forget drops it once
// written). Retries of messages that were not attempted are not remembered: nothing was
// published.
func (u *unrecorded) remember(recs []outbox.Record, o outbox.Outcome) {
	ids := make(map[int64]uuid.UUID, len(recs))
	for i := range recs {
		ids[recs[i].Seq] = recs[i].ID
	}
	dup := make(map[int64]bool, len(o.Duplicates))
	for _, seq := range o.Duplicates {
		dup[seq] = true
	}
	now := time.Now()
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = make(map[int64]memo)
	}
	put := func(seq int64, m memo) {
		if len(u.m) >= maxUnrecorded {
			if _, ok := u.m[seq]; !ok {
				return
			}
		}
		m.id = ids[seq]
		u.m[seq] = m
	}
	for _, seq := range o.Published {
		put(seq, memo{kind: memoPublished, dup: dup[seq]})
	}
	for _, r := range o.Retry {
		if !r.NotAttempted {
			put(r.Seq, memo{kind: memoRetry, until: now.Add(r.Delay), err: r.Error})
		}
	}
	for _, d := range o.Dead {
		put(d.Seq, memo{kind: memoDead, err: d.Error})
	}
}

// failed notes that the outcome o, remembered, could not be recorded: the relay's recorder
// (Relay.recordRemembered) tries at once.
func (u *unrecorded) failed(o outbox.Outcome) {
	u.mu.Lock()
	for _, seq := range o.Published {
		if m, ok := u.m[seq]; ok {
			m.failed = true
			u.m[seq] = m
			u.anyFailed = true
		}
	}
	u.mu.Unlock()
	if len(o.Published) > 0 && u.kick != nil {
		select {
		case u.kick <- struct{}{}:
		default:
		}
	}
}

// forget drops the remembered outcomes of o's messages: they are recorded now.
func (u *unrecorded) forget(o outbox.Outcome) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.m) == 0 {
		return
	}
	for _, seq := range o.Published {
		delete(u.m, seq)
	}
	for _, r := range o.Retry {
		delete(u.m, r.Seq)
	}
	for _, d := range o.Dead {
		delete(u.m, d.Seq)
	}
}

// replay splits recs into the outcome already decided for some of them and the records still
// to publish, keeping per-key order: after a remembered retry, the later messages of its key
// are left out (released unchanged, as after a failed publish).
func (u *unrecorded) replay(recs []outbox.Record) (outbox.Outcome, []outbox.Record) {
	var o outbox.Outcome
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.m) == 0 {
		return o, recs
	}
	rest := make([]outbox.Record, 0, len(recs))
	var stopped map[string]bool
	now := time.Now()
	for _, r := range recs {
		m, ok := u.m[r.Seq]
		if ok && m.id != r.ID {
			delete(u.m, r.Seq) // another message under the same sequence number
			ok = false
		}
		if !ok {
			if r.Key == "" || !stopped[r.Key] {
				rest = append(rest, r)
			}
			continue
		}
		switch m.kind {
		case memoPublished:
			o.Published = append(o.Published, r.Seq)
			if m.dup {
				o.Duplicates = append(o.Duplicates, r.Seq)
			}
		case memoDead:
			o.Dead = append(o.Dead, outbox.Dead{Seq: r.Seq, Error: m.err})
		case memoRetry:
			o.Retry = append(o.Retry, outbox.Retry{Seq: r.Seq, Delay: max(0, m.until.Sub(now)), Error: m.err})
			if r.Key != "" {
				if stopped == nil {
					stopped = make(map[string]bool)
				}
				stopped[r.Key] = true
			}
		}
	}
	return o, rest
}

// merge appends b's lists to a's.
func merge(a, b outbox.Outcome) outbox.Outcome {
	a.Published = append(a.Published, b.Published...)
	a.Retry = append(a.Retry, b.Retry...)
	a.Dead = append(a.Dead, b.Dead...)
	a.Duplicates = append(a.Duplicates, b.Duplicates...)
	return a
}

// publishedRefs returns up to n of the remembered published messages whose Finish failed.
func (u *unrecorded) publishedRefs(n int) []Ref {
	u.mu.Lock()
	defer u.mu.Unlock()
	var refs []Ref
	for seq, m := range u.m {
		if m.kind != memoPublished || !m.failed {
			continue
		}
		if len(refs) == n {
			break
		}
		refs = append(refs, Ref{Seq: seq, ID: m.id})
	}
	return refs
}

// forgetPublished drops the remembered published outcomes of seqs: recorded now.
func (u *unrecorded) forgetPublished(seqs []int64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, seq := range seqs {
		if m, ok := u.m[seq]; ok && m.kind == memoPublished {
			delete(u.m, seq)
		}
	}
}

// hasPublished reports whether a published outcome whose Finish failed is remembered.
func (u *unrecorded) hasPublished() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.anyFailed {
		return false
	}
	for _, m := range u.m {
		if m.kind == memoPublished && m.failed {
			return true
		}
	}
	u.anyFailed = false
	return false
}
