package chaos

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Message states as the producer saw them.
const (
	statePending    uint8 = iota // transaction in progress
	stateCommitted               // COMMIT returned success
	stateRolledBack              // rolled back on purpose: must never be delivered
	stateAborted                 // failed before COMMIT was sent: never committed
	stateUncertain               // COMMIT failed (connection lost): the business table decides
)

// entry is one message the producers wrote (or tried to).
type entry struct {
	id       uuid.UUID
	key      int32
	seq      int32 // per-key sequence; -1 for messages of rolled-back transactions
	state    uint8
	txStart  bool  // the first message of its transaction
	inDB     bool  // its business row exists: the transaction committed (set by verify)
	commitNs int64 // unix ns when COMMIT returned (or failed)
	firstNs  int64 // unix ns of the first delivery; 0 = never delivered
	copies   uint32
}

// delivery is one message as the consumer got it from the broker.
type delivery struct {
	id      string // the message id from the envelope (ce-id, ce_id, cloudEvents:id)
	payload []byte
	at      time.Time
	// headers are the message's headers, from the brokers whose consumer reports them
	// (broker.headers); nil otherwise.
	headers map[string][]string
}

// ledger records what was produced and what was delivered, and checks per-key order on the
// fly, in the order the consumer receives.
type ledger struct {
	start time.Time

	mu              sync.Mutex
	entries         []entry
	maxSeq          []int32 // per key: highest sequence number delivered first so far
	deliveries      int64
	lateDuplicates  int // copies of a key's message after a later message of the key
	violations      int
	violationSample []OrderViolation
	unknown         int
	unknownSample   []string
	hostile         []hostileRow // written with plain SQL (Config.Hostile)
}

func newLedger(keys int, start time.Time) *ledger {
	l := &ledger{start: start, maxSeq: make([]int32, keys)}
	for i := range l.maxSeq {
		l.maxSeq[i] = -1
	}
	return l
}

// add appends entries (state pending) and returns the index of the first.
func (l *ledger) add(es []entry) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := len(l.entries)
	l.entries = append(l.entries, es...)
	return first
}

// settle sets the state (and commit time) of entries [first, first+n).
func (l *ledger) settle(first, n int, state uint8, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := first; i < first+n; i++ {
		l.entries[i].state = state
		l.entries[i].commitNs = at.UnixNano()
	}
}

const sampleLimit = 50

// addHostile appends a hostile row about to be written and returns its number.
func (l *ledger) addHostile(h hostileRow) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hostile = append(l.hostile, h)
	return len(l.hostile) - 1
}

// settleHostile records a hostile row's payload and its INSERT's error; an error leaves the
// row uncertain unless the class expects it.
func (l *ledger) settleHostile(i int, payload []byte, err error, errUncertain bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := &l.hostile[i]
	h.payload, h.at = payload, time.Now()
	switch {
	case errors.Is(err, errNoOriginal):
		h.skipped = true
	case err != nil:
		h.insertErr, h.uncertain = err.Error(), errUncertain
	}
}

// lastCommitted returns the id and key of the latest message whose COMMIT succeeded.
func (l *ledger) lastCommitted() (id, key string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.entries) - 1; i >= 0; i-- {
		if e := &l.entries[i]; e.state == stateCommitted {
			return e.id.String(), keyName(int(e.key)), true
		}
	}
	return "", "", false
}

// deliver records one delivery.
func (l *ledger) deliver(d delivery) {
	idx, ok := parsePayload(d.payload)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deliveries++
	if h, isHostile := parseHostile(d.payload); isHostile && h < len(l.hostile) {
		if r := &l.hostile[h]; r.copies == 0 {
			r.headers = d.headers
		}
		l.hostile[h].copies++
		return
	}
	if !ok || idx < 0 || idx >= len(l.entries) || l.entries[idx].id.String() != d.id {
		l.unknown++
		if len(l.unknownSample) < sampleLimit {
			l.unknownSample = append(l.unknownSample, fmt.Sprintf("id %s payload %.60q", d.id, d.payload))
		}
		return
	}
	e := &l.entries[idx]
	e.copies++
	if e.copies > 1 {
		// A duplicate: order is promised on first delivery only, but a copy that follows a
		// later message of its key is worth counting.
		if e.seq >= 0 && e.seq < l.maxSeq[e.key] {
			l.lateDuplicates++
		}
		return
	}
	e.firstNs = d.at.UnixNano()
	if e.seq < 0 {
		return // a rolled-back transaction's message: a phantom, counted by verify
	}
	if m := l.maxSeq[e.key]; e.seq < m {
		l.violations++
		if len(l.violationSample) < sampleLimit {
			l.violationSample = append(l.violationSample, OrderViolation{
				Key: keyName(int(e.key)), Seq: int(e.seq), AfterSeq: int(m), MessageID: e.id.String(),
				AtSeconds: d.at.Sub(l.start).Seconds(),
			})
		}
		return
	}
	l.maxSeq[e.key] = e.seq
}

// keyName is the outbox key of key number k.
func keyName(k int) string { return "k" + strconv.Itoa(k) }

// payloadPrefix starts every payload the producers write.
const payloadPrefix = "chaos i="

// makePayload encodes the ledger index, key and sequence, padded to size bytes.
func makePayload(idx, key, seq int, rolledBack bool, size int) []byte {
	rb := 0
	if rolledBack {
		rb = 1
	}
	b := fmt.Appendf(nil, "%s%d k=%d s=%d rb=%d ", payloadPrefix, idx, key, seq, rb)
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

// parsePayload returns the ledger index of a payload made by makePayload.
func parsePayload(p []byte) (int, bool) { return parseNumber(p, payloadPrefix) }

// parseNumber returns the number that follows prefix in p, up to a space.
func parseNumber(p []byte, prefix string) (int, bool) {
	rest, ok := bytes.CutPrefix(p, []byte(prefix))
	if !ok {
		return 0, false
	}
	end := bytes.IndexByte(rest, ' ')
	if end < 0 {
		return 0, false
	}
	idx, err := strconv.Atoi(string(rest[:end]))
	return idx, err == nil
}
