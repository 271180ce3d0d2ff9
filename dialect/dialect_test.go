package dialect_test

import (
	"testing"

	"github.com/outboxgo/outbox/dialect"
)

func TestMembershipOf(t *testing.T) {
	ids := []string{"a", "b", "c"}
	for i, id := range ids {
		m, err := dialect.MembershipOf(ids, id)
		if err != nil || m != (dialect.Membership{Index: i, Count: 3}) {
			t.Errorf("MembershipOf(%v, %q) = %+v, %v; want index %d of 3", ids, id, m, err, i)
		}
	}
	if _, err := dialect.MembershipOf(ids, "d"); err == nil {
		t.Error("MembershipOf of a relay not in the list: no error")
	}
	if _, err := dialect.MembershipOf(nil, "a"); err == nil {
		t.Error("MembershipOf of an empty list: no error")
	}
}

func TestOutcomeCheckHeld(t *testing.T) {
	held := func(seq int64) bool { return seq < 10 }
	for _, c := range []struct {
		name string
		o    dialect.Outcome
		ok   bool
	}{
		{"empty", dialect.Outcome{}, true},
		{"all held", dialect.Outcome{Published: []int64{1}, Retry: []dialect.Retry{{Seq: 2}}, Dead: []dialect.Dead{{Seq: 3}}}, true},
		{"published", dialect.Outcome{Published: []int64{1, 10}}, false},
		{"retry", dialect.Outcome{Retry: []dialect.Retry{{Seq: 11}}}, false},
		{"dead", dialect.Outcome{Dead: []dialect.Dead{{Seq: 12}}}, false},
	} {
		if err := c.o.CheckHeld(held); (err == nil) != c.ok {
			t.Errorf("%s: CheckHeld = %v, want ok %v", c.name, err, c.ok)
		}
	}
}
