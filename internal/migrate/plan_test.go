package migrate

import (
	"slices"
	"testing"
	"time"
)

func versions(ms []Migration) []int {
	var v []int
	for _, m := range ms {
		v = append(v, m.Version)
	}
	return v
}

func TestPlan(t *testing.T) {
	ms := []Migration{{Version: 1}, {Version: 2}, {Version: 3}, {Version: 4}}
	at := time.Unix(1, 0)
	applied := map[int]time.Time{1: at, 2: at, 4: at} // 3 missing: applied out of order
	if got := versions(Pending(ms, applied)); !slices.Equal(got, []int{3}) {
		t.Errorf("Pending = %v, want [3]", got)
	}
	if got := versions(Pending(ms, nil)); !slices.Equal(got, []int{1, 2, 3, 4}) {
		t.Errorf("Pending of none applied = %v", got)
	}
	for steps, want := range map[int][]int{0: {4, 2, 1}, -1: {4, 2, 1}, 1: {4}, 2: {4, 2}, 9: {4, 2, 1}} {
		if got := versions(ToRevert(ms, applied, steps)); !slices.Equal(got, want) {
			t.Errorf("ToRevert(steps %d) = %v, want %v", steps, got, want)
		}
	}
	st := Status(ms, applied)
	if len(st) != 4 || !st[0].Applied || st[2].Applied || !st[3].AppliedAt.Equal(at) {
		t.Errorf("Status = %+v", st)
	}
}
