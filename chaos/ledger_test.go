package chaos

import (
	"testing"
	"time"

	"github.com/outboxgo/outbox"
)

// ledgerWith returns a ledger of one key holding messages with the given sequence numbers
// (-1: a rolled-back transaction's message).
func ledgerWith(seqs ...int) *ledger {
	l := newLedger(1, time.Now())
	for _, s := range seqs {
		l.add([]entry{{id: outbox.NewID(), key: 0, seq: int32(s), txStart: true}})
	}
	return l
}

func (l *ledger) deliverIdx(i int) {
	e := l.entries[i]
	l.deliver(delivery{id: e.id.String(), payload: makePayload(i, int(e.key), int(e.seq), e.seq < 0, 64), at: time.Now()})
}

func TestLedgerOrder(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		order      []int // ledger indexes, in delivery order
		violations int
		late       int
	}{
		{name: "in order", order: []int{0, 1, 2, 3}},
		{name: "gap is not a violation", order: []int{0, 2, 3}},
		{name: "swapped", order: []int{0, 2, 1, 3}, violations: 1},
		{name: "last first", order: []int{3, 0, 1, 2}, violations: 3},
		{name: "duplicate in place", order: []int{0, 0, 1, 1, 2, 3}},
		{name: "late duplicate is no violation", order: []int{0, 1, 2, 0, 3}, late: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := ledgerWith(0, 1, 2, 3)
			for _, i := range tc.order {
				l.deliverIdx(i)
			}
			if l.violations != tc.violations || l.lateDuplicates != tc.late {
				t.Fatalf("violations %d, late duplicates %d; want %d, %d (%+v)", l.violations, l.lateDuplicates, tc.violations, tc.late, l.violationSample)
			}
			if tc.violations > 0 && l.violationSample[0].Key != "k0" {
				t.Fatalf("sample %+v", l.violationSample)
			}
		})
	}
}

func TestLedgerUnknown(t *testing.T) {
	t.Parallel()
	l := ledgerWith(0, -1)
	l.deliver(delivery{id: outbox.NewID().String(), payload: makePayload(0, 0, 0, false, 10)})  // id does not match
	l.deliver(delivery{id: l.entries[0].id.String(), payload: []byte("hello")})                 // not ours
	l.deliver(delivery{id: l.entries[0].id.String(), payload: makePayload(7, 0, 0, false, 10)}) // no such index
	if l.unknown != 3 || l.entries[0].copies != 0 {
		t.Fatalf("unknown %d, copies %d", l.unknown, l.entries[0].copies)
	}
	l.deliverIdx(1) // a rolled-back message: recorded (verify calls it a phantom), no order check
	if l.entries[1].copies != 1 || l.violations != 0 {
		t.Fatalf("rolled-back delivery: copies %d, violations %d", l.entries[1].copies, l.violations)
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	t.Parallel()
	p := makePayload(123456, 7, 42, false, 128)
	if len(p) != 128 {
		t.Fatalf("payload of %d bytes", len(p))
	}
	if i, ok := parsePayload(p); !ok || i != 123456 {
		t.Fatalf("parsed %d, %v", i, ok)
	}
	for _, bad := range []string{"", "chaos i=", "chaos i=x ", "other i=1 "} {
		if _, ok := parsePayload([]byte(bad)); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}
