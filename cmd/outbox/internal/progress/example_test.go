package progress_test

import (
	"os"
	"time"

	"github.com/outboxgo/outbox/cmd/outbox/internal/progress"
)

func Example() {
	// A clock that the loop advances, so that the output is the same at every run; commands
	// leave the default, time.Now.
	now := time.Date(2026, 12, 7, 23, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }

	// Not a terminal: plain lines, here one at every Add (WithInterval(0)).
	p := progress.New(os.Stdout, false, "dlq retry", 12000, progress.WithInterval(0), progress.WithClock(clock))
	for range 3 {
		now = now.Add(time.Second) // one batch of 4,000 a second
		p.Add(4000)
	}
	p.Finish()
	// Output:
	// dlq retry: 4000/12000 (33%), 4,000/s, eta 2s
	// dlq retry: 8000/12000 (66%), 4,000/s, eta 1s
	// dlq retry: 12000/12000 (100%), 4,000/s
	// dlq retry: 12000/12000 (100%), 4,000/s, done in 3s
}
