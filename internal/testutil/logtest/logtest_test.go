package logtest

import (
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBufferConcurrentWriteAndRead(t *testing.T) {
	t.Parallel()
	var b Buffer
	log := b.Logger()
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Go(func() {
			for j := 0; j < 50; j++ {
				log.Error("line", "n", j)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := strings.Count(b.String(), "level=ERROR msg=line"); n != 200 {
		t.Errorf("%d lines, want 200", n)
	}
}

func TestRecorder(t *testing.T) {
	t.Parallel()
	rec := &Recorder{}
	log := slog.New(rec)
	log.Debug("quiet", "a", 1)
	log.Warn("sink unavailable; pausing it", slog.String("sink", "nats"), slog.Duration("probe_in", time.Second))
	if !rec.Has("WARN sink unavailable") || rec.Has("INFO") || !rec.Has("DEBUG quiet a=1") {
		t.Fatalf("records %q", rec.Msgs())
	}
	if got := rec.Msgs()[1]; got != "WARN sink unavailable; pausing it sink=nats probe_in=1s" {
		t.Fatalf("record %q", got)
	}
}

// A logger of New outlives its test without logging into it.
func TestNewAfterTheTest(t *testing.T) {
	t.Parallel()
	var late *slog.Logger
	t.Run("inner", func(t *testing.T) {
		late = New(t)
		late.Info("during the test")
	})
	late.Info("after the test") // would panic in t.Log
}
