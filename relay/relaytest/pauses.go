package relaytest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/outboxgo/outbox/dialect"
)

// Pauses is an in-memory dialect.Pauser, for relay.Config.Pauses in tests: it keeps pauses as
// a store's pauses table does, and can be told to fail its reads (SetError). The zero value
// is ready to use; it is safe for concurrent use.
type Pauses struct {
	mu    sync.Mutex
	list  []dialect.Pause
	err   error
	reads int
}

var _ dialect.Pauser = (*Pauses)(nil)

// Pause implements dialect.Pauser.
func (p *Pauses) Pause(_ context.Context, ps dialect.Pause) error {
	if err := ps.Validate(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.index(ps.Kind, ps.Name) >= 0 {
		return fmt.Errorf("pausing %s %q: %w", ps.Kind, ps.Name, dialect.ErrAlreadyPaused)
	}
	ps.PausedAt = time.Now()
	p.list = append(p.list, ps)
	slices.SortFunc(p.list, func(a, b dialect.Pause) int {
		return cmp.Or(strings.Compare(string(a.Kind), string(b.Kind)), strings.Compare(a.Name, b.Name))
	})
	return nil
}

// Resume implements dialect.Pauser.
func (p *Pauses) Resume(_ context.Context, kind dialect.PauseKind, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := p.index(kind, name)
	if i < 0 {
		return fmt.Errorf("resuming %s %q: %w", kind, name, dialect.ErrNotPaused)
	}
	p.list = slices.Delete(p.list, i, i+1)
	return nil
}

// ListPauses implements dialect.Pauser; it returns the error set by SetError, if any.
func (p *Pauses) ListPauses(context.Context) ([]dialect.Pause, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reads++
	if p.err != nil {
		return nil, p.err
	}
	return slices.Clone(p.list), nil
}

// SetError makes ListPauses fail with err (nil: answer again).
func (p *Pauses) SetError(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

// Reads counts the ListPauses calls.
func (p *Pauses) Reads() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reads
}

func (p *Pauses) index(kind dialect.PauseKind, name string) int {
	return slices.IndexFunc(p.list, func(ps dialect.Pause) bool { return ps.Kind == kind && ps.Name == name })
}
