//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// 'enqueue --ndjson' of a FIFO (a shell's <(zcat backfill.gz)) reads it once: every message,
// its total unknown, as on standard input.
func TestEnqueueNDJSONFIFO(t *testing.T) {
	t.Parallel()
	in := sqliteEnv(t)
	in.progressEvery = -1
	in.run(t, "migrate", "up").want(t, 0)
	fifo := filepath.Join(t.TempDir(), "backfill.ndjson")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	written := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			written <- err
			return
		}
		for i := range 25 {
			fmt.Fprintf(f, `{"topic":"fifo","key":"k","data":"%d"}`+"\n", i)
		}
		written <- f.Close()
	}()
	r := in.run(t, "enqueue", "--ndjson", fifo, "--batch", "10").want(t, 0)
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if want := "enqueued 25 message(s) from " + fifo + "\n"; r.stdout != want {
		t.Fatalf("stdout = %q, want %q", r.stdout, want)
	}
	wantProgress(t, r, "enqueue", "10, ", "20, ", "25, ")
	if s := statusJSONOf(t, in); s.Pending != 25 {
		t.Fatalf("pending %d, want 25", s.Pending)
	}
}
