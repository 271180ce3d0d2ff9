package listen

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
)

// VersionHeader is the event header carrying the version of the state the event decides:
// the self-consumer reads it back (in any letter case: HTTP bindings canonicalise names).
const VersionHeader = "state-version"

// Errors callers branch on.
var (
	// ErrNoVersion is returned by the Handler for a message without a valid VersionHeader
	// or key: not an event of Write. The inbox retries it and then dead-letters it.
	ErrNoVersion = errors.New("listen: message carries no state version")
	// ErrStateMismatch is returned by Write when the next state decide returned is not the
	// one the self-consumer will derive from the event (Config.StateOf): the cache would
	// serve a state the table never holds.
	ErrStateMismatch = errors.New("listen: next state differs from the event's")
	// ErrNotApplied is wrapped (with context.DeadlineExceeded) by WaitApplied's error when
	// the token's events were not all applied in time.
	ErrNotApplied = errors.New("listen: events not applied yet")
)

// Decide is the business decision of a write: given the key's current state (found false
// for a key never written), it returns the event to enqueue and the key's next state. Write
// sets next.Key and next.Version (the current version plus one) and, when empty, the event's
// Key; its error aborts the write.
type Decide func(current State, found bool) (event outbox.Message, next State, err error)

// Apply writes next, the state an event decided, into the service's table inside the
// self-consumer's transaction tx, guarded by version: it must not replace a stored version
// greater than or equal to next.Version, and reports whether it wrote. See ExecApply.
type Apply func(ctx context.Context, tx outbox.Tx, msg inbox.Message, next State) (applied bool, err error)

// Config configures a Service.
type Config struct {
	// Inbox is the self-consumer's inbox: the one its adapter runs Handler with. WaitApplied
	// asks it which events are processed. Required.
	Inbox *inbox.Inbox
	// Cache holds the decided states. Required: a MemoryCache per replica, or one shared by
	// the replicas (redislisten).
	Cache Cache
	// Writer enqueues the events. Default: the default outbox table of PostgreSQL
	// (outbox.NewWriter(outbox.WriterConfig{})).
	Writer *outbox.Writer
	// Load reads the applied state of key from the service's own table: the cache's
	// fallback, and what a write decides on when it is newer than the cache's. Required.
	Load func(ctx context.Context, key string) (State, bool, error)
	// LoadTx is Load inside the write's transaction tx (a pgx.Tx or a *sql.Tx). Optional for
	// Write, which uses Load (on another connection) without it; required by WriteLocked,
	// whose lock holder must not wait for a second connection of a pool its waiters hold.
	LoadTx func(ctx context.Context, tx outbox.Tx, key string) (State, bool, error)
	// StateOf derives a state's Value from its event, as the self-consumer sees it. Default:
	// the payload (the event carries the whole next state). Write checks that decide's next
	// state is what StateOf gives for its event.
	StateOf func(msg inbox.Message) ([]byte, error)
	// Logger receives the cache's failures and the events not applied. Default
	// slog.Default().
	Logger *slog.Logger
}

// Validate checks cfg and returns a *outbox.ConfigError naming the first missing field.
func (cfg Config) Validate() error {
	switch {
	case cfg.Inbox == nil:
		return &outbox.ConfigError{Field: "inbox", Reason: "required"}
	case cfg.Cache == nil:
		return &outbox.ConfigError{Field: "cache", Reason: "required"}
	case cfg.Load == nil:
		return &outbox.ConfigError{Field: "load", Reason: "required"}
	}
	return nil
}

// Service is one replica's side of "listen to yourself": it writes events, serves reads
// from the cache and applies its own events. It is safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Writer == nil {
		w, err := outbox.NewWriter(outbox.WriterConfig{})
		if err != nil {
			return nil, err
		}
		cfg.Writer = w
	}
	if cfg.StateOf == nil {
		cfg.StateOf = func(msg inbox.Message) ([]byte, error) { return msg.Payload, nil }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Service{cfg: cfg, log: cfg.Logger}, nil
}

// Read returns the state of key: the cache's, else the table's (Load), which it then
// caches. A cache failure is logged and the table read.
//
// The cache holds the latest state decided through this cache: on the writer's replica (or
// on any, with a shared cache) a read right after a write sees it. A replica with an
// in-process cache may hold an older state than a write made elsewhere: read with ReadAfter
// and the write's token there.
func (s *Service) Read(ctx context.Context, key string) (State, bool, error) {
	st, ok, err := s.cfg.Cache.Get(ctx, key)
	switch {
	case err != nil:
		s.log.WarnContext(ctx, "listen: cache read failed; reading the table", "key", key, "error", err)
		return s.load(ctx, key)
	case ok:
		return st, true, nil
	}
	st, ok, err = s.load(ctx, key)
	if err != nil || !ok {
		return st, ok, err
	}
	s.fill(ctx, st)
	return st, true, nil
}

// ReadAfter reads key once the events of tok are applied (WaitApplied, at most max): the
// newer of the cache's state and the table's, which refreshes the cache. With a zero token
// it is Read.
func (s *Service) ReadAfter(ctx context.Context, key string, tok Token, maxWait time.Duration) (State, bool, error) {
	if tok.IsZero() {
		return s.Read(ctx, key)
	}
	if err := s.WaitApplied(ctx, tok, maxWait); err != nil {
		return State{}, false, err
	}
	st, ok, err := s.load(ctx, key)
	if err != nil {
		return State{}, false, err
	}
	cached, cok, cerr := s.cfg.Cache.Get(ctx, key)
	if cerr != nil {
		s.log.WarnContext(ctx, "listen: cache read failed", "key", key, "error", cerr)
	}
	if cerr == nil && cok && (!ok || cached.Version > st.Version) {
		return cached, true, nil
	}
	if ok {
		s.fill(ctx, st)
	}
	return st, ok, nil
}

func (s *Service) load(ctx context.Context, key string) (State, bool, error) {
	st, ok, err := s.cfg.Load(ctx, key)
	return loadResult(key, st, ok, err)
}

// loadTx is load in tx, with LoadTx when set.
func (s *Service) loadTx(ctx context.Context, tx outbox.Tx, key string) (State, bool, error) {
	if s.cfg.LoadTx == nil {
		return s.load(ctx, key)
	}
	st, ok, err := s.cfg.LoadTx(ctx, tx, key)
	return loadResult(key, st, ok, err)
}

func loadResult(key string, st State, ok bool, err error) (State, bool, error) {
	if err != nil {
		return State{}, false, fmt.Errorf("listen: loading %q: %w", key, err)
	}
	if ok && st.Key == "" {
		st.Key = key
	}
	return st, ok, nil
}

// fill caches st, logging a failure: the cache is the fast path, the table the truth.
func (s *Service) fill(ctx context.Context, st State) {
	if _, err := s.cfg.Cache.Put(ctx, st); err != nil {
		s.log.WarnContext(ctx, "listen: cache write failed", "key", st.Key, "version", st.Version, "error", err)
	}
}

// current is what a write decides on: the newer of the cache's state and the table's. A
// cache failure fails the write (deciding on the table alone could reuse a version).
func (s *Service) current(ctx context.Context, tx outbox.Tx, key string) (State, bool, error) {
	cached, cok, err := s.cfg.Cache.Get(ctx, key)
	if err != nil {
		return State{}, false, fmt.Errorf("listen: reading the cache for %q: %w", key, err)
	}
	st, ok, err := s.loadTx(ctx, tx, key)
	if err != nil {
		return State{}, false, err
	}
	if cok && (!ok || cached.Version > st.Version) {
		return cached, true, nil
	}
	return st, ok, nil
}

// Pending is a write enqueued in a transaction that is not committed yet.
type Pending struct {
	svc   *Service
	state State
	token Token
}

// State returns the state the write decided (its Key and Version set).
func (p Pending) State() State { return p.state }

// Token returns the token of the write's event.
func (p Pending) Token() Token { return p.token }

// Committed fills the cache with the decided state: call it after the transaction
// committed (never after a rollback, or the cache would serve a state no event carries).
// It does nothing when the cache holds a newer or equal version already (the self-consumer
// was quicker). Its error means the cache could not be written: the write is committed and
// will be applied, but a read on the cache may not see it until then.
func (p Pending) Committed(ctx context.Context) error {
	if p.svc == nil {
		return nil
	}
	if _, err := p.svc.cfg.Cache.Put(ctx, p.state); err != nil {
		return fmt.Errorf("listen: caching %q version %d after the commit: %w", p.state.Key, p.state.Version, err)
	}
	return nil
}

// Write decides and enqueues one event of key in tx, the caller's transaction (a pgx.Tx or
// a *sql.Tx, as for outbox.Enqueue): the service writes only the event; its table is
// written when it consumes the event (Handler). Write reads the current state (the newer of
// the cache's and the table's, through LoadTx in tx when set, else Load), calls decide, stamps next.Version = current.Version + 1 and puts
// it in the event's VersionHeader, and enqueues the event. Commit tx, then call
// Pending.Committed to fill the cache.
//
// Two writes of one key at the same moment (two requests, two replicas) may read the same
// current state and decide the same version twice: the self-consumer applies the first it
// consumes and skips the other (logged), which is a lost update. Serialize the writes of a
// key where that matters: WriteLocked (a PostgreSQL advisory lock held until the cache is
// filled, with a cache shared by the replicas), or route each key to one replica.
func (s *Service) Write(ctx context.Context, tx outbox.Tx, key string, decide Decide) (Pending, error) {
	if key == "" {
		return Pending{}, fmt.Errorf("%w: empty key", ErrInvalidState)
	}
	cur, found, err := s.current(ctx, tx, key)
	if err != nil {
		return Pending{}, err
	}
	if !found {
		cur = State{Key: key}
	}
	ev, next, err := decide(cur, found)
	if err != nil {
		return Pending{}, fmt.Errorf("listen: deciding %q: %w", key, err)
	}
	switch {
	case ev.Key == "":
		ev.Key = key
	case ev.Key != key:
		return Pending{}, fmt.Errorf("listen: the event's key %q is not the state's %q", ev.Key, key)
	}
	next.Key, next.Version = key, cur.Version+1
	headers := make(map[string]string, len(ev.Headers)+1)
	for k, v := range ev.Headers {
		if strings.EqualFold(k, VersionHeader) {
			return Pending{}, fmt.Errorf("listen: the event sets %s itself", VersionHeader)
		}
		headers[k] = v
	}
	headers[VersionHeader] = strconv.FormatInt(next.Version, 10)
	ev.Headers = headers
	if ev.ID == uuid.Nil {
		ev.ID = outbox.NewID()
	}
	derived, err := s.cfg.StateOf(inbox.Message{ID: ev.ID.String(), Topic: ev.Topic, Type: ev.EventType(), Key: ev.Key,
		Headers: maps.Clone(headers), Payload: ev.Payload})
	if err != nil {
		return Pending{}, fmt.Errorf("listen: deriving the state of the event of %q: %w", key, err)
	}
	if !bytes.Equal(derived, next.Value) {
		return Pending{}, fmt.Errorf("%w: key %q", ErrStateMismatch, key)
	}
	if err := s.cfg.Writer.Enqueue(ctx, tx, ev); err != nil {
		return Pending{}, err
	}
	return Pending{svc: s, state: next, token: TokenOf(ev.ID)}, nil
}

// VersionOf returns the state version an event of Write carries, and its key.
func VersionOf(msg inbox.Message) (int64, error) {
	if msg.Key == "" {
		return 0, fmt.Errorf("%w: message %s has no key", ErrNoVersion, msg.ID)
	}
	for k, v := range msg.Headers {
		if strings.EqualFold(k, VersionHeader) {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 1 {
				return 0, fmt.Errorf("%w: message %s: %s %.32q", ErrNoVersion, msg.ID, VersionHeader, v)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: message %s has no %s header", ErrNoVersion, msg.ID, VersionHeader)
}

// Handler returns the self-consumer's inbox handler: run it, through the service's own
// inbox adapter, on the topic of its own events. For each event it reads the version
// (VersionOf) and the value (Config.StateOf), calls apply in the inbox's transaction and,
// when apply wrote, refreshes the cache (version-guarded, so a late or duplicate event
// never moves it back). An event apply did not write (a newer or equal version is stored:
// delivered out of order, or a concurrent write of the same version) is logged.
func (s *Service) Handler(apply Apply) inbox.Handler {
	return func(ctx context.Context, tx outbox.Tx, msg inbox.Message) error {
		v, err := VersionOf(msg)
		if err != nil {
			return err
		}
		value, err := s.cfg.StateOf(msg)
		if err != nil {
			return fmt.Errorf("listen: deriving the state of %s: %w", msg.ID, err)
		}
		next := State{Key: msg.Key, Version: v, Value: value}
		applied, err := apply(ctx, tx, msg, next)
		if err != nil {
			return err
		}
		if !applied {
			s.log.WarnContext(ctx, "listen: event not applied: the table holds a newer or equal version",
				"key", msg.Key, "version", v, "message_id", msg.ID)
			return nil
		}
		// Before the inbox's commit: the state is decided (its event committed) whether or
		// not this transaction commits, and Put never lowers the cached version.
		s.fill(ctx, next)
		return nil
	}
}

// ExecApply returns an Apply that runs query in tx (a pgx.Tx or a *sql.Tx) with the
// arguments key, version and value, and reports it applied when it affected a row. The
// query must write only when the stored version is lower; on PostgreSQL and SQLite:
//
//	INSERT INTO accounts (key, version, value) VALUES ($1, $2, $3)
//	ON CONFLICT (key) DO UPDATE SET version = excluded.version, value = excluded.value
//	WHERE accounts.version < excluded.version
//
// (SQLite takes ? or $1 placeholders). On MySQL, INSERT ... ON DUPLICATE KEY UPDATE reports
// no affected row for an unchanged one: value = IF(version < VALUES(version),
// VALUES(value), value), version = GREATEST(version, VALUES(version)), in that order.
func ExecApply(query string) Apply {
	return func(ctx context.Context, tx outbox.Tx, _ inbox.Message, next State) (bool, error) {
		var n int64
		switch tx := tx.(type) {
		case interface {
			Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
		}:
			tag, err := tx.Exec(ctx, query, next.Key, next.Version, next.Value)
			if err != nil {
				return false, fmt.Errorf("listen: applying %q version %d: %w", next.Key, next.Version, err)
			}
			n = tag.RowsAffected()
		case interface {
			ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
		}:
			res, err := tx.ExecContext(ctx, query, next.Key, next.Version, next.Value)
			if err != nil {
				return false, fmt.Errorf("listen: applying %q version %d: %w", next.Key, next.Version, err)
			}
			if n, err = res.RowsAffected(); err != nil {
				return false, fmt.Errorf("listen: applying %q version %d: %w", next.Key, next.Version, err)
			}
		default:
			return false, fmt.Errorf("%w: %T", outbox.ErrUnsupportedTx, tx)
		}
		return n > 0, nil
	}
}
