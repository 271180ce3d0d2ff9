package relay

import (
	"testing"
	"time"
)

// The retry delay is full jitter: uniform in [0, min(BackoffMax, BackoffBase·2^attempts)],
// without overflow for any number of attempts; the worker's own pause after failures is
// between half and all of 100ms doubling up to its ceiling.
func TestBackoffFullJitter(t *testing.T) {
	r := &Relay{cfg: Config{BackoffBase: 10 * time.Millisecond, BackoffMax: time.Second}}
	for _, attempts := range []int{0, 1, 3, 6, 7, 20, 62, 63, 64, 1 << 20} {
		ceil := time.Second
		if attempts < 7 {
			ceil = 10 * time.Millisecond << attempts
		}
		var high bool
		for range 200 {
			d := r.backoff(attempts)
			if d < 0 || d > ceil {
				t.Fatalf("backoff(%d) = %v, want within [0, %v]", attempts, d, ceil)
			}
			high = high || d > ceil/2
		}
		if !high {
			t.Errorf("backoff(%d): 200 draws all in the lower half of [0, %v]: not uniform", attempts, ceil)
		}
	}
	for failures, ceil := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 10: 5 * time.Second, 1000: 5 * time.Second} {
		for range 100 {
			if d := pause(failures, 5*time.Second); d < ceil/2 || d > ceil {
				t.Fatalf("pause(%d) = %v, want within [%v, %v]", failures, d, ceil/2, ceil)
			}
		}
	}
}
