package relaytest

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/sink"
)

// Rule scripts what a Sink answers for the messages it matches. A message matches when every
// condition that is set holds; the first matching rule of the script decides for it, and a
// message no rule matches is acknowledged.
type Rule struct {
	// Topic and Key, when not empty, match only messages of that topic and key.
	Topic, Key string
	// Attempt, when not 0, matches only that attempt of a message: 1 for its first
	// (Record.Attempts+1; retries that were not attempted do not count).
	Attempt int
	// Match, when set, is a further condition (called with the sink's lock held: it must
	// not call the sink).
	Match func(r *outbox.Record) bool
	// Times, when not 0, expires the rule after it matched that many messages.
	Times int

	// Err is the message's result: nil acknowledges it. Any error fails it retryably;
	// sink.Permanent(err) dead-letters it, sink.Unavailable(err) says the sink as a whole is
	// down, sink.Duplicate(detail) acknowledges it as a duplicate.
	Err error
	// Fail, when set, decides the message's result instead of Err (same meanings), when the
	// call answers.
	Fail func(r *outbox.Record) error
	// RetryAfter, when not 0, makes an error result carry that delay (it implements
	// sink.RetryAfter, as a 429 with a Retry-After header does).
	RetryAfter time.Duration
	// Delay holds the whole Publish call this long before it answers (the longest Delay of
	// the call's messages counts), or until its context ends.
	Delay time.Duration
	// Block holds the whole Publish call until Block is closed, or its context ends.
	Block <-chan struct{}
}

type rule struct {
	Rule
	left int // matches left when Times is set
}

func (r *rule) matches(m *outbox.Record) bool {
	return (r.Topic == "" || r.Topic == m.Topic) &&
		(r.Key == "" || r.Key == m.Key) &&
		(r.Attempt == 0 || r.Attempt == m.Attempts+1) &&
		(r.Match == nil || r.Match(m))
}

// Call is one Publish call a Sink answered.
type Call struct {
	// Records are the messages of the call, in order.
	Records []outbox.Record
	// Results are what Publish returned for them.
	Results []error
	// Start and End are when the call began and when it answered.
	Start, End time.Time
}

// Sink is an in-memory sink.Sink that records what it is given and answers as its script
// says (see Rule): errors, permanent errors, sink.Unavailable, duplicates, Retry-After
// delays, slow or blocked calls. When a call's context ends before it answered (the relay's
// PublishTimeout, a shutdown) every message of it fails with the context's error, as the
// sink contract requires. A Sink is safe for concurrent use; create it with NewSink.
type Sink struct {
	mu      sync.Mutex
	script  []*rule
	started int
	calls   []Call
	acked   []outbox.Record
	counts  map[string]int // acknowledgements per message id
	closed  bool
}

// NewSink returns a Sink that acknowledges everything until scripted otherwise.
func NewSink() *Sink { return &Sink{counts: map[string]int{}} }

// Script appends r to the script and returns a function that removes it again (for an
// outage that ends, a failure that heals).
func (s *Sink) Script(r Rule) (remove func()) {
	rl := &rule{Rule: r, left: r.Times}
	s.mu.Lock()
	s.script = append(s.script, rl)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.script = slices.DeleteFunc(s.script, func(x *rule) bool { return x == rl })
	}
}

// Publish implements sink.Sink.
func (s *Sink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	start := time.Now()
	matched := make([]*rule, len(msgs))
	var (
		delay  time.Duration
		blocks []<-chan struct{}
	)
	s.mu.Lock()
	s.started++
	closed := s.closed
	for i, m := range msgs {
		for _, r := range s.script {
			if r.left < 0 || !r.matches(m) {
				continue
			}
			matched[i] = r
			if r.Times > 0 {
				if r.left--; r.left == 0 {
					r.left = -1 // expired
				}
			}
			delay = max(delay, r.Delay)
			if r.Block != nil {
				blocks = append(blocks, r.Block)
			}
			break
		}
	}
	s.script = slices.DeleteFunc(s.script, func(r *rule) bool { return r.left < 0 })
	s.mu.Unlock()

	res := make([]error, len(msgs))
	switch {
	case closed:
		res = sink.FailAll(len(msgs), sink.Unavailable(errors.New("relaytest: sink closed")))
	case wait(ctx, blocks, delay) != nil:
		res = sink.FailAll(len(msgs), ctx.Err())
	default:
		for i, r := range matched {
			if r == nil {
				continue
			}
			err := r.Err
			if r.Fail != nil {
				err = r.Fail(msgs[i])
			}
			if err != nil && r.RetryAfter > 0 {
				err = WithRetryAfter(err, r.RetryAfter)
			}
			res[i] = err
		}
	}

	call := Call{Records: make([]outbox.Record, len(msgs)), Results: res, Start: start, End: time.Now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, m := range msgs {
		call.Records[i] = *m
		if res[i] == nil || sink.IsDuplicate(res[i]) {
			s.acked = append(s.acked, *m)
			s.counts[m.ID.String()]++
		}
	}
	s.calls = append(s.calls, call)
	return res
}

// wait waits for every channel of blocks to close and then d, or until ctx ends (it returns
// ctx's error then).
func wait(ctx context.Context, blocks []<-chan struct{}, d time.Duration) error {
	for _, b := range blocks {
		select {
		case <-b:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := relay.Sleep(ctx, d); err != nil {
		return err
	}
	return ctx.Err()
}

// Close implements sink.Sink: later calls fail every message with a sink.Unavailable error.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// Started is the number of Publish calls begun, answered or not (a call in flight).
func (s *Sink) Started() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// Calls returns the Publish calls answered so far, in the order they answered.
func (s *Sink) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Acked returns the acknowledged messages (duplicates acknowledged again included), in the
// order their calls answered.
func (s *Sink) Acked() []outbox.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.acked)
}

// Unique is the number of distinct messages acknowledged.
func (s *Sink) Unique() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.counts)
}

// Counts returns how often each message (by its id, Record.ID.String()) was acknowledged.
func (s *Sink) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.counts)
}

// Duplicates is the number of acknowledgements beyond each message's first: messages
// published again.
func (s *Sink) Duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.acked) - len(s.counts)
}

// WithRetryAfter returns err carrying a Retry-After of d: the result implements
// sink.RetryAfter, and errors.Is and errors.As see err through it.
func WithRetryAfter(err error, d time.Duration) error {
	return &retryAfterError{err: err, d: d}
}

type retryAfterError struct {
	err error
	d   time.Duration
}

func (e *retryAfterError) Error() string             { return e.err.Error() }
func (e *retryAfterError) Unwrap() error             { return e.err }
func (e *retryAfterError) RetryAfter() time.Duration { return e.d }

var (
	_ sink.Sink       = (*Sink)(nil)
	_ sink.RetryAfter = (*retryAfterError)(nil)
)
