package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// buildOutbox compiles the outbox command into dir. It must run inside the module.
func buildOutbox(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "outbox")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/outboxgo/outbox/cmd/outbox")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the outbox command (run inside the module, or pass the binary): %v\n%s", err, out)
	}
	return bin, nil
}

// relayProcs supervises the `outbox relay` processes (or the consumer processes): a process
// that exits is started again, after the pause its killer chose, or after a short one when it
// exited by itself (a relay exits 1 when the database is unreachable at start, as during a
// database fault).
type relayProcs struct {
	bin    string
	args   []string // default: relay
	name   string   // of the processes, in logs and errors; default "relay"
	dir    string
	env    func(i int) []string
	logger *slog.Logger
	start  time.Time
	slots  []*relaySlot
	wg     sync.WaitGroup
}

type relaySlot struct {
	i       int
	logPath string

	mu       sync.Mutex
	cmd      *exec.Cmd
	running  bool // cmd has not been waited for
	stopping bool
	killed   bool          // the current process was killed by the checker
	pause    time.Duration // before the next start
	wake     chan struct{} // closed by stop, to end a pause early
	starts   int
	exits    []RelayExit // exits the checker did not cause
}

func (p *relayProcs) kind() string { return cmpOr(p.name, "relay") }

func startRelays(p *relayProcs, n int) error {
	for i := range n {
		s := &relaySlot{i: i, logPath: filepath.Join(p.dir, fmt.Sprintf("%s-%d.log", p.kind(), i)), wake: make(chan struct{})}
		p.slots = append(p.slots, s)
		if err := p.spawn(s); err != nil {
			return err
		}
		p.wg.Add(1)
		go p.supervise(s)
	}
	return nil
}

var errStopping = errors.New("relays stopping")

func (p *relayProcs) spawn(s *relaySlot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return errStopping
	}
	f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close() // the child has its own descriptor
	fmt.Fprintf(f, "=== chaos: start %d at +%.3fs\n", s.starts+1, time.Since(p.start).Seconds())
	args := p.args
	if len(args) == 0 {
		args = []string{"relay"}
	}
	cmd := exec.Command(p.bin, args...)
	cmd.Env = append(inheritedEnv(), p.env(s.i)...)
	cmd.Stdout, cmd.Stderr = f, f
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s %d: %w", p.kind(), s.i, err)
	}
	s.cmd = cmd
	s.running = true
	s.killed = false
	s.starts++
	return nil
}

func (p *relayProcs) supervise(s *relaySlot) {
	defer p.wg.Done()
	for {
		s.mu.Lock()
		cmd := s.cmd
		s.mu.Unlock()
		err := cmd.Wait()
		s.mu.Lock()
		s.running = false
		if s.stopping {
			s.mu.Unlock()
			return
		}
		pause := s.pause
		if !s.killed {
			pause = 300 * time.Millisecond
			s.exits = append(s.exits, RelayExit{
				Relay: s.i, AtSeconds: time.Since(p.start).Seconds(), Status: exitStatus(err),
				LogTail: tailFile(s.logPath, 3),
			})
		}
		s.pause = 0
		s.mu.Unlock()
		select {
		case <-time.After(pause):
		case <-s.wake:
			return
		}
		for {
			err := p.spawn(s)
			if err == nil {
				break
			}
			if errors.Is(err, errStopping) {
				return
			}
			p.logger.Error("restarting "+p.kind(), slog.Int(p.kind(), s.i), slog.Any("error", err))
			select {
			case <-time.After(time.Second):
			case <-s.wake:
				return
			}
		}
	}
}

// kill sends SIGKILL to process i; it is started again after pause.
func (p *relayProcs) kill(i int, pause time.Duration) {
	s := p.slots[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping || !s.running {
		return
	}
	s.killed = true
	s.pause = pause
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
}

// stop ends every process: SIGTERM, then SIGKILL after grace. A nil p has none.
func (p *relayProcs) stop(grace time.Duration) {
	if p == nil {
		return
	}
	for _, s := range p.slots {
		s.mu.Lock()
		if !s.stopping {
			s.stopping = true
			close(s.wake)
		}
		if s.running {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
		}
		s.mu.Unlock()
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-time.After(grace):
	}
	for _, s := range p.slots {
		s.mu.Lock()
		if s.running {
			_ = s.cmd.Process.Kill()
		}
		s.mu.Unlock()
	}
	<-done
}

// stats returns how many times the processes started, and the exits the checker did not
// cause. A nil p has none.
func (p *relayProcs) stats() (starts int, exits []RelayExit) {
	if p == nil {
		return 0, nil
	}
	for _, s := range p.slots {
		s.mu.Lock()
		starts += s.starts
		exits = append(exits, s.exits...)
		s.mu.Unlock()
	}
	return starts, exits
}

func exitStatus(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	if err != nil {
		return err.Error()
	}
	return "exit status 0"
}

// tailFile returns the last n lines the latest process wrote to a relay log.
func tailFile(path string, n int) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	if i := bytes.LastIndex(b, []byte("=== chaos:")); i >= 0 {
		b = b[i:]
		if j := bytes.IndexByte(b, '\n'); j >= 0 {
			b = b[j+1:]
		} else {
			b = nil
		}
	}
	var lines []string
	for _, l := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		if len(l) > 0 {
			lines = append(lines, strings.TrimSpace(string(l)))
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// inheritedEnv is the environment without OUTBOX_* variables: the relays' configuration is
// the run's alone (an OUTBOX_CONFIG file of the user's would change it).
func inheritedEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OUTBOX_") {
			env = append(env, kv)
		}
	}
	return env
}
