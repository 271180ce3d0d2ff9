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

// TestDecodeHeaders: string values are taken as they are, other JSON values kept as their
// JSON text (rows written by hand or by other languages); empty and {} give nil.
func TestDecodeHeaders(t *testing.T) {
	h, err := dialect.DecodeHeaders([]byte(`{"a":"x","n":1}`))
	if err != nil || len(h) != 2 || h["a"] != "x" || h["n"] != "1" {
		t.Fatalf("DecodeHeaders = %v, %v", h, err)
	}
	for _, raw := range []string{"", "{}"} {
		if h, err := dialect.DecodeHeaders([]byte(raw)); err != nil || h != nil {
			t.Errorf("DecodeHeaders(%q) = %v, %v; want nil", raw, h, err)
		}
	}
}
