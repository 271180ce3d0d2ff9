package poll

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/relay"
)

// Defaults.
const (
	DefaultBatchSize         = 1000
	DefaultPollInterval      = 100 * time.Millisecond
	DefaultWorkers           = 2
	DefaultHeartbeatInterval = 2 * time.Second
	DefaultMemberTTL         = 10 * time.Second
	DefaultMaxBatchBytes     = 16 << 20
	maxBlockedKeys           = 10000
)

// Config configures a Source.
type Config struct {
	// Store is the outbox to claim from: only its claim path is used. When it also
	// implements dialect.Notifier, idle workers wake on commits (see DisableNotify).
	Store dialect.Claimer
	// BatchSize is the most messages one claim takes. Default 1000.
	BatchSize int
	// MaxBatchBytes bounds the payload bytes of one claim (memory per worker). Default 16 MiB.
	MaxBatchBytes int
	// PollInterval is how long a worker waits after finding nothing. Default 100ms.
	PollInterval time.Duration
	// Workers is how many claims run concurrently (each on its own slice of the keys).
	// Default 2.
	Workers int
	// RelayID names this relay in the membership table. Default host-pid-random.
	RelayID string
	// HeartbeatInterval and MemberTTL: a relay silent for MemberTTL is presumed dead and its
	// share of the keys moves to the others. Defaults 2s and 10s.
	HeartbeatInterval, MemberTTL time.Duration
	// Topics, when not empty, limits this relay to messages of these exact topics, so each
	// channel can have relays of its own. Keys still order across topics.
	Topics []string
	// Retention keeps published rows (marked published_at) for this long instead of deleting
	// them at once. 0 deletes on publish.
	Retention time.Duration
	// DisableNotify turns off commit notifications (PostgreSQL LISTEN/NOTIFY, SQLite
	// commit hooks and data_version), leaving only polling. Stores that cannot notify always
	// poll.
	DisableNotify bool
	Logger        *slog.Logger
}

// Source claims from a dialect.Claimer. It implements relay.Source, relay.Runner and
// relay.Concurrent.
type Source struct {
	cfg    Config
	group  string // relays with the same topic filter share the key space
	logger *slog.Logger
	slots  chan int
	// wakes holds one wake-up channel per worker slot: a worker's wake-up cannot be taken by
	// another worker, which would leave the first asleep for its whole interval while the
	// commit that woke them is in its slice of the keys.
	wakes []chan struct{}
	// settled[slot]: the slot's last claim read its whole share and everything in it was
	// published or rescheduled, so with notifications on it waits for one (or its poll)
	// instead of claiming again at once — that claim would come back empty. Only the worker
	// holding the slot (received from slots) touches its entry.
	settled   []bool
	listening atomic.Bool  // the commit listener runs: new commits will wake the workers
	member    atomic.Value // dialect.Membership

	// The wake-up gate (rest.go): nil when the store has none or notifications are off.
	gate       dialect.WakeGate
	noGateAt   atomic.Int64  // unix ns when the schema turned out to have no gate (0: has one)
	rests      []rest        // per slot, touched only by the worker holding it
	waiting    atomic.Int32  // slots that opened the gate and wait
	gateEpoch  atomic.Uint64 // bumped when the gate may have lapsed: the waiting reopen it
	leaseUntil atomic.Int64  // unix ns until which the gate is surely open
	gateMu     sync.Mutex    // orders openings and closings of the gate
	gateWoke   chan struct{} // the last waiting worker woke: shut the gate

	mu      sync.Mutex
	blocked map[string]time.Time // key → when its head message becomes available

	excluded atomic.Pointer[[]string] // topics the relay paused (ExcludeTopics)

	claims, emptyClaims, claimErrors atomic.Uint64
	heartbeatAt                      atomic.Int64 // unix ns of the last heartbeat that succeeded
	heartbeatErr                     atomic.Pointer[string]
}

// Stats is a snapshot of a Source's work since it was created.
type Stats struct {
	// Claims counts claims that returned messages, EmptyClaims those that found none,
	// ClaimErrors those that failed (the database unreachable, say).
	Claims, EmptyClaims, ClaimErrors uint64
	// Membership is this relay's place among the live relays of its group: it owns
	// Workers of the Membership.Count·Workers slices of the key space.
	Membership dialect.Membership
	// Listening is true while commit notifications can wake the workers.
	Listening bool
	// LastHeartbeat is when the membership was last renewed (zero before the first);
	// HeartbeatError is the error of the last heartbeat, "" when it succeeded.
	LastHeartbeat  time.Time
	HeartbeatError string
}

// Stats returns a snapshot of the source's work. It is safe to call concurrently with
// Next and Run.
func (s *Source) Stats() Stats {
	st := Stats{
		Claims:      s.claims.Load(),
		EmptyClaims: s.emptyClaims.Load(),
		ClaimErrors: s.claimErrors.Load(),
		Membership:  s.Membership(),
		Listening:   s.listening.Load(),
	}
	if ns := s.heartbeatAt.Load(); ns != 0 {
		st.LastHeartbeat = time.Unix(0, ns)
	}
	if e := s.heartbeatErr.Load(); e != nil {
		st.HeartbeatError = *e
	}
	return st
}

var (
	_ relay.Source        = (*Source)(nil)
	_ relay.Runner        = (*Source)(nil)
	_ relay.Concurrent    = (*Source)(nil)
	_ relay.TopicExcluder = (*Source)(nil)
)

// New validates cfg and returns a Source.
func New(cfg Config) (*Source, error) {
	if cfg.Store == nil {
		return nil, &outbox.ConfigError{Field: "store", Reason: "required"}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if cfg.RelayID == "" {
		cfg.RelayID = defaultRelayID()
	}
	s := &Source{
		cfg:      cfg,
		logger:   cmp.Or(cfg.Logger, slog.Default()),
		slots:    make(chan int, cfg.Workers),
		wakes:    make([]chan struct{}, cfg.Workers),
		settled:  make([]bool, cfg.Workers),
		rests:    make([]rest, cfg.Workers),
		gateWoke: make(chan struct{}, 1),
		blocked:  make(map[string]time.Time),
	}
	if g, ok := cfg.Store.(dialect.WakeGate); ok && !cfg.DisableNotify {
		if _, ok := cfg.Store.(dialect.Notifier); ok {
			s.gate = g
		}
	}
	for i := range cfg.Workers {
		s.wakes[i] = make(chan struct{}, 1)
		s.slots <- i
	}
	topics := slices.Clone(cfg.Topics)
	slices.Sort(topics)
	s.group = strings.Join(slices.Compact(topics), ",")
	s.member.Store(dialect.Membership{Index: 0, Count: 1})
	return s, nil
}

// withDefaults returns c with its zero settings replaced by the defaults.
func (c Config) withDefaults() Config {
	c.BatchSize = cmp.Or(c.BatchSize, DefaultBatchSize)
	c.MaxBatchBytes = cmp.Or(c.MaxBatchBytes, DefaultMaxBatchBytes)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	c.Workers = cmp.Or(c.Workers, DefaultWorkers)
	c.HeartbeatInterval = cmp.Or(c.HeartbeatInterval, DefaultHeartbeatInterval)
	c.MemberTTL = cmp.Or(c.MemberTTL, DefaultMemberTTL)
	return c
}

// Validate reports the first invalid setting of c as an *outbox.ConfigError naming the field
// in snake_case (batch_size, poll_interval, topics, ...). Zero values are valid: New replaces
// them by their defaults. Store is not checked, so that a configuration can be checked
// before the database is open; New requires it.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.BatchSize < 1 || c.BatchSize > 100000:
		return &outbox.ConfigError{Field: "batch_size", Reason: "must be between 1 and 100000"}
	case c.MaxBatchBytes < 0:
		return &outbox.ConfigError{Field: "max_batch_bytes", Reason: "must not be negative"}
	case c.PollInterval < time.Millisecond:
		return &outbox.ConfigError{Field: "poll_interval", Reason: "must be at least 1ms"}
	case c.Workers < 1 || c.Workers > 256:
		return &outbox.ConfigError{Field: "workers", Reason: "must be between 1 and 256"}
	case c.HeartbeatInterval <= 0 || c.MemberTTL < 2*c.HeartbeatInterval:
		return &outbox.ConfigError{Field: "member_ttl", Reason: "must be at least twice heartbeat_interval"}
	case c.Retention < 0:
		return &outbox.ConfigError{Field: "retention", Reason: "must not be negative"}
	case slices.Contains(c.Topics, ""):
		return &outbox.ConfigError{Field: "topics", Reason: "must not contain an empty topic"}
	}
	for _, topic := range c.Topics {
		// A topic no message can have would filter out everything.
		if err := outbox.CheckTopic(topic); err != nil {
			return &outbox.ConfigError{Field: "topics", Reason: fmt.Sprintf("%q %v", topic, err)}
		}
	}
	return nil
}

func defaultRelayID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", cmp.Or(host, "relay"), os.Getpid(), hex.EncodeToString(b[:]))
}

// RelayID returns the id this relay registers under.
func (s *Source) RelayID() string { return s.cfg.RelayID }

// Concurrency implements relay.Concurrent.
func (s *Source) Concurrency() int { return s.cfg.Workers }

// Membership returns this relay's last known position among the live relays.
func (s *Source) Membership() dialect.Membership { return s.member.Load().(dialect.Membership) }

// Run heartbeats (and, with Retention, deletes expired published rows) until ctx ends, then
// leaves the membership so the others take over at once. With a store that notifies, it also
// listens for commits and wakes idle workers.
func (s *Source) Run(ctx context.Context) error {
	if n, ok := s.cfg.Store.(dialect.Notifier); ok && !s.cfg.DisableNotify {
		done := make(chan struct{})
		defer func() { <-done }()
		s.listening.Store(true)
		go func() {
			defer close(done)
			defer s.listening.Store(false)
			_ = n.Listen(ctx, s.wakeFor)
		}()
		if s.gate != nil {
			renewed := make(chan struct{})
			defer func() { <-renewed }()
			go func() {
				defer close(renewed)
				s.keepGateOpen(ctx)
			}()
		}
	}
	s.heartbeat(ctx)
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := s.cfg.Store.Leave(lctx, s.cfg.RelayID); err != nil {
				s.logger.Warn("leaving relay membership failed", slog.Any("error", err))
			}
			return nil
		case <-t.C:
			s.heartbeat(ctx)
			if s.cfg.Retention > 0 {
				s.cleanup(ctx)
			}
		}
	}
}

func (s *Source) heartbeat(ctx context.Context) {
	m, err := s.cfg.Store.Heartbeat(ctx, s.cfg.RelayID, s.group, s.cfg.MemberTTL)
	if err != nil {
		if ctx.Err() == nil {
			msg := err.Error()
			s.heartbeatErr.Store(&msg)
			s.logger.Warn("relay heartbeat failed", slog.Any("error", err))
		}
		return
	}
	s.heartbeatAt.Store(time.Now().UnixNano())
	s.heartbeatErr.Store(nil)
	if old := s.Membership(); old != m {
		s.logger.Info("relay membership changed", slog.String("relay_id", s.cfg.RelayID),
			slog.Int("index", m.Index), slog.Int("relays", m.Count))
		s.member.Store(m)
		// Notifications are routed by the shares of the old membership: a commit routed
		// just before the change may now be in another worker's share.
		s.Wake()
	}
}

func (s *Source) cleanup(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := s.cfg.Store.DeletePublished(ctx, s.cfg.Retention, 5000)
		if err != nil {
			s.logger.Warn("deleting published messages failed", slog.Any("error", err))
			return
		}
		if n < 5000 {
			return
		}
	}
}

// RecordPublished implements relay.Recorder when the store implements dialect.Recorder;
// otherwise it records nothing and returns an error matching errors.ErrUnsupported.
func (s *Source) RecordPublished(ctx context.Context, refs []relay.Ref) ([]int64, error) {
	rec, ok := s.cfg.Store.(dialect.Recorder)
	if !ok {
		return nil, errNoRecorder
	}
	drefs := make([]dialect.Ref, len(refs))
	for i, r := range refs {
		drefs[i] = dialect.Ref{Seq: r.Seq, ID: r.ID}
	}
	return rec.RecordPublished(ctx, drefs, s.cfg.Retention > 0)
}

var errNoRecorder = fmt.Errorf("poll: the store cannot record messages outside a claim: %w", errors.ErrUnsupported)

// ExcludeTopics implements relay.TopicExcluder: claims leave the messages of topics in the
// table (dialect.ClaimRequest.ExcludeTopics) until the next call. A call that lets topics
// flow again wakes the idle workers.
func (s *Source) ExcludeTopics(topics []string) {
	old := s.excluded.Swap(&topics)
	if old != nil && slices.ContainsFunc(*old, func(t string) bool { return !slices.Contains(topics, t) }) {
		s.Wake()
	}
}

// Wake makes idle workers poll now instead of at the end of their interval. A worker busy
// claiming when Wake is called polls again as soon as it would have waited: the wake-up is
// kept for it, so a commit racing with an empty claim is not left for the next interval.
func (s *Source) Wake() {
	for _, w := range s.wakes {
		select {
		case w <- struct{}{}:
		default: // already pending for that worker
		}
	}
}

// wakeFor wakes the workers whose share of the keys holds one of keyHashes (all of them
// when keyHashes is nil). Hashes of other relays' shares wake nobody here.
func (s *Source) wakeFor(keyHashes []uint64) {
	if keyHashes == nil {
		s.Wake()
		return
	}
	m := s.Membership()
	for _, h := range keyHashes {
		for slot, w := range s.wakes {
			if dialect.InShare(h, m.Index, m.Count, slot, len(s.wakes)) {
				select {
				case w <- struct{}{}:
				default: // already pending for that worker
				}
				break
			}
		}
	}
}

// Next implements relay.Source: it claims a non-empty batch for one of the worker slots.
func (s *Source) Next(ctx context.Context) (relay.Batch, error) {
	var slot int
	select {
	case slot = <-s.slots:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if s.settled[slot] {
		s.settled[slot] = false
		if err := s.rest(ctx, slot); err != nil {
			s.slots <- slot
			return nil, err
		}
	}
	for {
		m := s.Membership()
		req := dialect.ClaimRequest{
			Limit:      s.cfg.BatchSize,
			MaxBytes:   s.cfg.MaxBatchBytes,
			Partition:  m.Index,
			Partitions: m.Count,
			Slot:       slot,
			Slots:      s.cfg.Workers,
			SkipKeys:   s.blockedKeys(),
			Topics:     s.cfg.Topics,
			Retain:     s.cfg.Retention > 0,
		}
		if ex := s.excluded.Load(); ex != nil {
			req.ExcludeTopics = *ex
		}
		c, err := s.cfg.Store.Claim(ctx, req)
		if err != nil {
			if ctx.Err() == nil {
				s.claimErrors.Add(1)
			}
			s.slots <- slot
			return nil, err
		}
		learned := s.noteBlocked(c.Blocked())
		if len(c.Records()) > 0 {
			s.claims.Add(1)
			s.busy(slot)
			return s.newBatch(c, slot), nil
		}
		s.emptyClaims.Add(1)
		if err := c.Finish(ctx, outbox.Outcome{}); err != nil {
			s.slots <- slot
			return nil, err
		}
		if learned {
			// The claim filled up with messages of blocked keys; now that they are known,
			// the next claim skips them and reaches the other keys.
			continue
		}
		if err := s.rest(ctx, slot); err != nil {
			s.slots <- slot
			return nil, err
		}
	}
}

// idle waits for a wake-up of slot's worker or for d, and reports whether it was woken.
func (s *Source) idle(ctx context.Context, slot int, d time.Duration) (bool, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-s.wakes[slot]:
		return true, nil
	case <-t.C:
		return false, nil
	}
}

func (s *Source) blockedKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.blocked) == 0 {
		return nil
	}
	now := time.Now()
	keys := make([]string, 0, len(s.blocked))
	for k, until := range s.blocked {
		if now.After(until) {
			delete(s.blocked, k)
			continue
		}
		keys = append(keys, k)
	}
	return keys
}

// noteBlocked remembers blocked keys until they are likely claimable again (at least one poll
// interval), and reports whether it learned a key it did not already skip.
func (s *Source) noteBlocked(keys []dialect.BlockedKey) bool {
	if len(keys) == 0 {
		return false
	}
	floor := time.Now().Add(s.cfg.PollInterval)
	s.mu.Lock()
	defer s.mu.Unlock()
	learned := false
	for _, k := range keys {
		until := k.Until
		if until.Before(floor) {
			until = floor
		}
		old, known := s.blocked[k.Key]
		if !known && len(s.blocked) >= maxBlockedKeys {
			continue // a hint only: the store's order check still holds the line
		}
		if until.After(old) {
			s.blocked[k.Key] = until
		}
		learned = learned || !known
	}
	return learned
}

// newBatch wraps claim c of slot for the relay: a claim that can checkpoint gives a batch that
// can (relay.Checkpointer).
func (s *Source) newBatch(c dialect.Claim, slot int) relay.Batch {
	b := &batch{Claim: c, src: s, slot: slot}
	if cp, ok := c.(dialect.Checkpointer); ok {
		return &checkpointBatch{batch: b, cp: cp}
	}
	return b
}

// checkpointBatch is a batch whose claim records published messages wave by wave.
type checkpointBatch struct {
	*batch
	cp dialect.Checkpointer
}

// Checkpoint implements relay.Checkpointer.
func (b *checkpointBatch) Checkpoint(ctx context.Context, o outbox.Outcome) error {
	return b.cp.Checkpoint(ctx, o)
}

type batch struct {
	dialect.Claim
	src  *Source
	slot int
	once sync.Once
}

// Finish implements relay.Batch. Keys with a retried message are remembered as blocked until
// that message's backoff ends, so the next claims don't fill up with their later messages.
func (b *batch) Finish(ctx context.Context, o outbox.Outcome) error {
	err := b.Claim.Finish(ctx, o)
	b.once.Do(func() {
		if err == nil && len(o.Retry) > 0 {
			keyOf := make(map[int64]string, len(o.Retry))
			for _, r := range b.Records() {
				keyOf[r.Seq] = r.Key
			}
			now := time.Now()
			var keys []dialect.BlockedKey
			for _, r := range o.Retry {
				if k := keyOf[r.Seq]; k != "" {
					keys = append(keys, dialect.BlockedKey{Key: k, Until: now.Add(r.Delay)})
				}
			}
			b.src.noteBlocked(keys)
		}
		// A claim that read its whole share, all of it handled: what commits later notifies.
		if ex, ok := b.Claim.(dialect.Exhaustive); ok && err == nil && ex.Exhausted() &&
			b.src.listening.Load() && len(o.Published)+len(o.Retry)+len(o.Dead) == len(b.Records()) {
			b.src.settled[b.slot] = true
		}
		b.src.slots <- b.slot
	})
	return err
}
