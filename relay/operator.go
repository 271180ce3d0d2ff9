package relay

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outboxgo/outbox/dialect"
)

// DefaultPauseInterval is how often a relay reads the operator pauses (Config.Pauses).
const DefaultPauseInterval = 2 * time.Second

// PauseLister reads the operator pauses of an outbox table: a dialect.Pauser (the stores of
// dialect/postgres, dialect/mysql and dialect/sqlite) is one.
type PauseLister interface {
	ListPauses(ctx context.Context) ([]dialect.Pause, error)
}

// TopicExcluder is implemented by sources that can leave the messages of some topics where
// they are when they read (relay/poll: dialect.ClaimRequest.ExcludeTopics), so that the
// messages of paused topics, and of topics routed to paused sinks, are not read at all while
// the pause lasts. The relay calls ExcludeTopics with the whole set each time it changes
// (nil: none). Sources without it deliver every message they read: the relay holds the paused
// ones (outbox.Retry.NotAttempted, for a pause interval at a time) until the pause ends.
type TopicExcluder interface {
	ExcludeTopics(topics []string)
}

// operatorState is one read of the pauses table: immutable once published.
type operatorState struct {
	list   []dialect.Pause
	topics map[string]*dialect.Pause
	sinks  map[string]*dialect.Pause
}

// operator tracks the operator pauses the relay last read, and the topics the relay asked its
// source to exclude.
type operator struct {
	state atomic.Pointer[operatorState]

	mu       sync.Mutex
	learned  map[string]string // topic → the paused sink it was found routed to
	excluded []string          // what the source was last told to exclude
	missing  bool              // the last read found no pauses table
	failing  bool              // the last read failed
}

// paused returns the pause holding a message of topic bound for dest, nil when none does.
func (o *operator) paused(topic, dest string) *dialect.Pause {
	st := o.state.Load()
	if st == nil {
		return nil
	}
	if p := st.topics[topic]; p != nil {
		return p
	}
	return st.sinks[dest]
}

// OperatorPauses returns the operator pauses (Config.Pauses) the relay read last, by kind
// then name: none without Config.Pauses, or before the first read. It is safe to call
// concurrently with Run.
func (r *Relay) OperatorPauses() []dialect.Pause {
	st := r.operator.state.Load()
	if st == nil {
		return []dialect.Pause{}
	}
	return slices.Clone(st.list)
}

// readPauses reads the pauses once and applies them; a failed read keeps the pauses read
// before it (an unreachable database resumes nothing).
func (r *Relay) readPauses(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, max(r.cfg.PauseInterval, 5*time.Second))
	defer cancel()
	list, err := r.cfg.Pauses.ListPauses(rctx)
	o := &r.operator
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case errors.Is(err, dialect.ErrNoPausesTable):
		if !o.missing {
			r.logger.Warn("the outbox has no pauses table: operator pauses are off until it is migrated (outbox migrate up)", slog.Any("error", err))
		}
		o.missing, o.failing = true, false
		list = nil
	case err != nil:
		if ctx.Err() != nil {
			return
		}
		if !o.failing {
			r.logger.Warn("reading the operator pauses failed; keeping those read before", slog.Any("error", err))
		}
		o.failing = true
		return
	default:
		if o.failing || o.missing {
			r.logger.Info("reading the operator pauses works again", slog.Int("pauses", len(list)))
		}
		o.missing, o.failing = false, false
	}
	st := &operatorState{list: list, topics: map[string]*dialect.Pause{}, sinks: map[string]*dialect.Pause{}}
	for i := range list {
		p := &list[i]
		switch p.Kind {
		case dialect.PauseTopic:
			st.topics[p.Name] = p
		case dialect.PauseSink:
			st.sinks[p.Name] = p
		}
	}
	if old := o.state.Swap(st); old != nil || len(list) > 0 {
		r.logPauseChanges(old, st)
	}
	// Learned topics of sinks no longer paused flow again.
	maps.DeleteFunc(o.learned, func(_, dest string) bool { return st.sinks[dest] == nil })
	r.excludeLocked()
}

// logPauseChanges logs the pauses that began and ended between two reads.
func (r *Relay) logPauseChanges(old, cur *operatorState) {
	if old == nil {
		old = &operatorState{}
	}
	for _, p := range cur.list {
		if of := old.kind(p.Kind)[p.Name]; of == nil {
			r.logger.Info("operator pause: holding messages", slog.String("kind", string(p.Kind)), slog.String("name", p.Name),
				slog.String("reason", p.Reason), slog.String("paused_by", p.PausedBy))
		}
	}
	for _, p := range old.list {
		if cur.kind(p.Kind)[p.Name] == nil {
			r.logger.Info("operator pause ended: resuming", slog.String("kind", string(p.Kind)), slog.String("name", p.Name),
				slog.Duration("paused_for", time.Since(p.PausedAt).Round(time.Second)))
		}
	}
}

func (st *operatorState) kind(k dialect.PauseKind) map[string]*dialect.Pause {
	if k == dialect.PauseSink {
		return st.sinks
	}
	return st.topics
}

// learn notes that topic's messages go to dest, a paused sink, so that an excluding source
// stops reading them.
func (r *Relay) learn(topic, dest string) {
	o := &r.operator
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.learned[topic] == dest {
		return
	}
	if o.learned == nil {
		o.learned = make(map[string]string)
	}
	o.learned[topic] = dest
	r.excludeLocked()
}

// excludeLocked tells an excluding source the topics to leave out, when they changed. Called
// with operator.mu held.
func (r *Relay) excludeLocked() {
	ex, ok := r.cfg.Source.(TopicExcluder)
	if !ok {
		return
	}
	o := &r.operator
	var topics []string
	if st := o.state.Load(); st != nil {
		topics = slices.AppendSeq(topics, maps.Keys(st.topics))
	}
	topics = slices.AppendSeq(topics, maps.Keys(o.learned))
	slices.Sort(topics)
	topics = slices.Compact(topics)
	if slices.Equal(topics, o.excluded) {
		return
	}
	o.excluded = topics
	ex.ExcludeTopics(slices.Clone(topics))
}

// watchPauses reads the pauses every PauseInterval until ctx ends.
func (r *Relay) watchPauses(ctx context.Context) {
	t := time.NewTicker(r.cfg.PauseInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.readPauses(ctx)
		}
	}
}
