package binlog

import (
	"testing"
	"time"
)

// lagSeconds counts from the last event read, but not from before the server was first seen
// ahead: the commit ending an idle spell is not the spell's length behind.
func TestLagSeconds(t *testing.T) {
	t.Parallel()
	s := &Source{}
	t0 := time.Unix(1_000_000, 0)
	at := t0.Add
	for i, step := range []struct {
		now, read time.Time
		bytes     int64
		want      float64
	}{
		{at(0), at(-time.Hour), 0, 0},                        // caught up after an idle hour
		{at(time.Second), at(-time.Hour), 100, 0},            // a commit: first seen behind now
		{at(3 * time.Second), at(-time.Hour), 200, 2},        // still unread: behind since then
		{at(4 * time.Second), at(2 * time.Second), 50, 2},    // read on, its event 2s old
		{at(5 * time.Second), at(5 * time.Second), 0, 0},     // caught up: forgotten
		{at(9 * time.Second), at(5 * time.Second), 10, 0},    // behind again, seen now
		{at(30 * time.Second), at(20 * time.Second), 10, 10}, // steadily behind: the event's age
		{at(31 * time.Second), time.Time{}, 10, 0},           // nothing read in this session yet
	} {
		if got := s.lagSeconds(step.now, step.read, step.bytes); got != step.want {
			t.Fatalf("step %d: lagSeconds = %v, want %v", i, got, step.want)
		}
	}
}
