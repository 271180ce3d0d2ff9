// Package progress reports the progress of the outbox command's long operations (dlq retry
// and purge --all, replay, enqueue --ndjson) on standard error.
//
// On a terminal a Reporter draws a bar with the count, the rate and the estimated time left,
// redrawn in place. Elsewhere (a log file, a CI job, a pipe) it writes a plain line at most
// every Interval, and one last line from Finish:
//
//	replay: 20000/50000 (40%), 8,100/s, eta 4s
//	replay: 50000/50000 (100%), 8,100/s, done in 6s
//
// When the total is unknown (0 or less: reading standard input, say) the lines have no
// percentage and no estimate. A nil *Reporter reports nothing: commands that print JSON, or
// were asked for no progress, pass nil around instead of testing a flag at each call.
package progress

import (
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// DefaultInterval is the least time between two plain lines (not on a terminal).
const DefaultInterval = 5 * time.Second

// Reporter reports how much of one operation is done. Its methods are safe for concurrent
// use, and do nothing on a nil *Reporter.
type Reporter struct {
	w        io.Writer
	label    string
	total    int64
	interval time.Duration
	now      func() time.Time
	bar      *progressbar.ProgressBar // nil when not on a terminal

	mu       sync.Mutex
	start    time.Time
	last     time.Time // when the last plain line was written
	done     int64
	finished bool
}

// Option configures a Reporter.
type Option func(*Reporter)

// WithInterval sets the least time between two plain lines (DefaultInterval by default);
// 0 or less writes a line at every Add or Set. It has no effect on a terminal.
func WithInterval(d time.Duration) Option {
	return func(r *Reporter) { r.interval = d }
}

// WithClock sets the clock the rate, the estimate and the interval are measured with
// (time.Now by default), for tests. It has no effect on a terminal's bar.
func WithClock(now func() time.Time) Option {
	return func(r *Reporter) { r.now = now }
}

// New returns a Reporter of an operation of total items (0 or less: unknown) writing to w,
// a bar when tty is true and plain lines otherwise. label names the operation at the start
// of each line ("replay", "dlq retry"). A nil w returns nil, a Reporter that reports
// nothing.
func New(w io.Writer, tty bool, label string, total int64, opts ...Option) *Reporter {
	if w == nil {
		return nil
	}
	r := &Reporter{w: w, label: label, total: max(total, 0), interval: DefaultInterval, now: time.Now}
	for _, o := range opts {
		o(r)
	}
	r.start = r.now()
	r.last = r.start
	if tty {
		limit := r.total
		if limit == 0 {
			limit = -1 // a spinner with the count
		}
		r.bar = progressbar.NewOptions64(limit,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(label),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("msg"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionFullWidth(),
			progressbar.OptionThrottle(100*time.Millisecond),
			// No spinner ticker: its goroutine redraws until the bar is finished, which
			// Exit is not, so it would go on drawing over what follows the last line, and
			// write to w beside the Reporter's own lines. The spinner turns at each Add.
			progressbar.OptionSetSpinnerChangeInterval(0),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
		)
	}
	return r
}

// IsTerminal reports whether w is a terminal (a *os.File on a TTY): whether New should draw
// a bar on it.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Add counts n more items done.
func (r *Reporter) Add(n int64) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.update(r.done + n)
}

// Set sets the number of items done so far, for operations that report a running total.
func (r *Reporter) Set(done int64) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.update(done)
}

// Done returns the number of items done so far.
func (r *Reporter) Done() int64 {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done
}

func (r *Reporter) update(done int64) {
	if r.finished {
		return
	}
	r.done = done
	if r.bar != nil {
		_ = r.bar.Set64(done) // a failed write to the terminal is no reason to stop the operation
		return
	}
	now := r.now()
	if now.Sub(r.last) < r.interval {
		return
	}
	r.last = now
	fmt.Fprintln(r.w, r.line(now, false))
}

// Finish ends the report: on a terminal it completes the bar's line, elsewhere (and on a
// terminal when the total was unknown or not reached) it writes the last line, with the time
// taken. Call it once the operation ended, also when it failed (the
// line then says how far it got). Later calls do nothing.
func (r *Reporter) Finish() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	r.finished = true
	if r.bar != nil {
		if r.total > 0 && r.done >= r.total {
			_ = r.bar.Finish() // reaching the total calls OnCompletion
			return
		}
		// Unknown total, or stopped short: the bar may not show the last count (it redraws
		// at most every 100 ms), so the plain last line follows it.
		_ = r.bar.Exit()
	}
	fmt.Fprintln(r.w, r.line(r.now(), true))
}

// line is one plain line: label, count, percentage and rate, then the estimate or (final)
// the time taken.
func (r *Reporter) line(now time.Time, final bool) string {
	elapsed := now.Sub(r.start)
	s := r.label + ": " + strconv.FormatInt(r.done, 10)
	if r.total > 0 {
		s += "/" + strconv.FormatInt(r.total, 10) + " (" + strconv.FormatInt(r.done*100/r.total, 10) + "%)"
	}
	var rate float64
	if elapsed > 0 {
		rate = float64(r.done) / elapsed.Seconds()
		s += ", " + thousands(int64(math.Round(rate))) + "/s"
	}
	switch {
	case final:
		s += ", done in " + roundDuration(elapsed).String()
	case r.total > 0 && rate > 0 && r.done < r.total:
		left := time.Duration(float64(r.total-r.done) / rate * float64(time.Second))
		s += ", eta " + roundDuration(left).String()
	}
	return s
}

// roundDuration rounds d to the second, or to the millisecond under a second.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}

// thousands writes n with a comma every three digits: 8,100.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3)
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
