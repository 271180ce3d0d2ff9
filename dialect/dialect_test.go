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
