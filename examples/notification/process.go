package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Supervised is a publisher running as a process of its own (this command's `publisher`
// subcommand), restarted whenever it dies until its context ends: what a process manager
// (systemd, Kubernetes) does for a real deployment.
type Supervised struct {
	name string
	args []string
	out  *printer
	logs io.Writer

	mu     sync.Mutex
	cmd    *exec.Cmd
	starts int
	done   chan struct{}
}

// Supervise starts `<this executable> publisher args...` and restarts it, 500ms after it
// dies, until ctx ends; then it sends SIGTERM and waits (at most 10s, then SIGKILL).
func Supervise(ctx context.Context, name string, args []string, out *printer, logs io.Writer) (*Supervised, error) {
	s := &Supervised{name: name, args: append([]string{"publisher"}, args...), out: out, logs: logs, done: make(chan struct{})}
	cmd, err := s.start(ctx)
	if err != nil {
		return nil, err
	}
	go s.loop(ctx, cmd)
	return s, nil
}

func (s *Supervised) start(ctx context.Context) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, s.args...) //nolint:gosec // this executable itself, with the publisher subcommand
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting publisher %s: %w", s.name, err)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.starts++
	s.mu.Unlock()
	return cmd, nil
}

func (s *Supervised) loop(ctx context.Context, cmd *exec.Cmd) {
	defer close(s.done)
	for {
		err := cmd.Wait()
		if ctx.Err() != nil {
			return
		}
		s.out.printf("\n  !! publisher %s (pid %d) died: %v; restarting it\n\n", s.name, cmd.Process.Pid, err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		next, err := s.start(ctx)
		if err != nil {
			s.out.printf("  %v\n", err)
			return
		}
		s.out.printf("  publisher %s restarted (pid %d)\n", s.name, next.Process.Pid)
		cmd = next
	}
}

// Pid is the process id of the running publisher.
func (s *Supervised) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Pid
}

// Kill sends SIGKILL to the running publisher (the supervisor restarts it).
func (s *Supervised) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd.Process.Kill()
}

// Starts counts the processes started, restarts included.
func (s *Supervised) Starts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}

// Wait waits, at most timeout, for the supervisor to stop after its context ended.
func (s *Supervised) Wait(timeout time.Duration) error {
	select {
	case <-s.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("publisher %s did not stop within %s", s.name, timeout)
	}
}
