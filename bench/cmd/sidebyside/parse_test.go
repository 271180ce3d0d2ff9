package main

import (
	"math"
	"testing"
	"time"
)

func TestParseSeq(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{`{"seq":42,"order_id":"o-1"}`, 42, true},
		{`{"seq":7}`, 7, true},
		{string(newMsg(123456, 10).payload), 123456, true},
		{`{"n":1}`, 0, false},
		{`{"seq":x,`, 0, false},
		{`{"seq":12`, 0, false},
	} {
		got, ok := parseSeq([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseSeq(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	// A command name with spaces and parentheses; utime 250, stime 50 ticks.
	stat := "4242 (side (by) side) S 1 4242 4242 0 -1 4194304 1000 0 0 0 250 50 0 0 20 0 9 0 100 2000000 5000 18446744073709551615"
	got, err := parseStatCPU(stat)
	if err != nil || math.Abs(got-3.0) > 1e-9 {
		t.Fatalf("parseStatCPU = %v, %v; want 3s", got, err)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Fatal("parseStatCPU(garbage): want an error")
	}
}

func TestParseHWM(t *testing.T) {
	t.Parallel()
	status := "Name:\tsidebyside\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\n"
	if got := parseHWM(status); got != 50 {
		t.Fatalf("parseHWM = %v, want 50 MiB", got)
	}
}

func TestPct(t *testing.T) {
	t.Parallel()
	ds := []time.Duration{5 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	if got := pct(ds, 0.5); got != 3 {
		t.Errorf("p50 = %v, want 3", got)
	}
	if got := pct(ds, 1); got != 5 {
		t.Errorf("max = %v, want 5", got)
	}
	if got := pct(nil, 0.5); got != 0 {
		t.Errorf("p50 of nothing = %v, want 0", got)
	}
}

func TestCollectorCountsDuplicatesAndOrder(t *testing.T) {
	t.Parallel()
	c := newCollector(time.Now(), 10, 2)
	for _, seq := range []int{0, 1, 2, 2, 5, 3, 99} { // 2 twice; 3 after 5 on key 1; 99 unknown
		c.record(newMsg(seq, 2).payload, c.now()+1)
	}
	if c.distinct.Load() != 5 || c.dups.Load() != 1 || c.unknown.Load() != 1 || c.orderViolations.Load() != 1 {
		t.Fatalf("distinct %d dups %d unknown %d order %d; want 5 1 1 1",
			c.distinct.Load(), c.dups.Load(), c.unknown.Load(), c.orderViolations.Load())
	}
}
