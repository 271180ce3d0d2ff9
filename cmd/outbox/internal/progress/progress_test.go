package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// clock is a settable time for WithClock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func lines(b *bytes.Buffer) []string {
	return strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
}
func newClock() *clock { return &clock{t: time.Date(2026, 12, 7, 23, 0, 0, 0, time.UTC)} }

// Off a terminal, a line is written at most every interval, with count, percentage, rate and
// estimate, and Finish writes the last one with the time taken.
func TestPlainLines(t *testing.T) {
	c := newClock()
	var b bytes.Buffer
	p := New(&b, false, "replay", 50000, WithClock(c.now), WithInterval(2*time.Second))
	c.advance(time.Second)
	p.Add(8000) // 1s after the start: too early for a line
	if b.Len() != 0 {
		t.Fatalf("a line before the interval: %q", b.String())
	}
	c.advance(time.Second)
	p.Add(8000) // 16000 in 2s
	c.advance(500 * time.Millisecond)
	p.Add(4000) // 0.5s after the last line: none
	c.advance(2 * time.Second)
	p.Set(36000) // 36000 in 4.5s: 8,000/s, 14000 left: 1.75s
	p.Finish()
	p.Finish() // once only
	p.Add(1)   // after Finish: nothing
	want := []string{
		"replay: 16000/50000 (32%), 8,000/s, eta 4s",
		"replay: 36000/50000 (72%), 8,000/s, eta 2s",
		"replay: 36000/50000 (72%), 8,000/s, done in 5s",
	}
	if got := lines(&b); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lines:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p.Done() != 36000 {
		t.Fatalf("Done() = %d", p.Done())
	}
}

// With the total unknown, the lines have the count and the rate only.
func TestPlainUnknownTotal(t *testing.T) {
	c := newClock()
	var b bytes.Buffer
	p := New(&b, false, "enqueue", 0, WithClock(c.now), WithInterval(0))
	c.advance(100 * time.Millisecond)
	p.Add(1234567)
	c.advance(900 * time.Millisecond)
	p.Finish()
	want := "enqueue: 1234567, 12,345,670/s\nenqueue: 1234567, 1,234,567/s, done in 1s\n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// Finish right away writes a line without a rate (no time elapsed), and a failed operation's
// last line says how far it got.
func TestPlainNothingDone(t *testing.T) {
	c := newClock()
	var b bytes.Buffer
	New(&b, false, "dlq retry", 10, WithClock(c.now)).Finish()
	if want := "dlq retry: 0/10 (0%), done in 0s\n"; b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}

// A nil Reporter (New with a nil writer) reports nothing and does not panic.
func TestNil(t *testing.T) {
	p := New(nil, true, "x", 10)
	if p != nil {
		t.Fatal("New(nil, ...) != nil")
	}
	p.Add(1)
	p.Set(2)
	p.Finish()
	if p.Done() != 0 {
		t.Fatal("nil Done() != 0")
	}
}

// On a terminal the bar is drawn with the label and the count, and ends its line.
func TestBar(t *testing.T) {
	var b bytes.Buffer
	p := New(&b, true, "dlq purge", 12000)
	p.Add(5000)
	p.Add(5000)
	p.Add(2000)
	p.Finish()
	out := b.String()
	for _, want := range []string{"dlq purge", "12000/12000", "100%"} {
		if !strings.Contains(out, want) {
			t.Fatalf("bar lacks %q: %q", want, out)
		}
	}
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("bar does not end its line: %q", out)
	}
	// Stopped short (or with the total unknown), the plain last line follows the bar.
	b.Reset()
	c := newClock()
	p = New(&b, true, "enqueue", 0, WithClock(c.now))
	p.Add(2500)
	c.advance(time.Second)
	p.Finish()
	if want := "\nenqueue: 2500, 2,500/s, done in 1s\n"; !strings.HasSuffix(b.String(), want) {
		t.Fatalf("bar stopped short: %q, want it to end with %q", b.String(), want)
	}
	// Finished, the bar draws nothing more (a spinner's ticker would go on redrawing).
	out = b.String()
	time.Sleep(300 * time.Millisecond)
	if b.String() != out {
		t.Fatalf("the bar drew after Finish: %q", strings.TrimPrefix(b.String(), out))
	}
	if IsTerminal(&b) {
		t.Fatal("a buffer is a terminal")
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 8100: "8,100", 1234567: "1,234,567", -1000: "-1,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
