package listen

import (
	"cmp"
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/outboxgo/outbox"
)

// Defaults of MemoryCacheConfig.
const (
	DefaultTTL        = 10 * time.Minute
	DefaultMaxEntries = 100_000
)

// MemoryCacheConfig configures a MemoryCache.
type MemoryCacheConfig struct {
	// TTL is how long an entry is kept after its Put. It must exceed the self-consumer's lag
	// (see the package documentation). Default DefaultTTL.
	TTL time.Duration
	// MaxEntries bounds the entries; the least recently used is evicted beyond it. Default
	// DefaultMaxEntries.
	MaxEntries int
}

func (c MemoryCacheConfig) withDefaults() MemoryCacheConfig {
	c.TTL = cmp.Or(c.TTL, DefaultTTL)
	c.MaxEntries = cmp.Or(c.MaxEntries, DefaultMaxEntries)
	return c
}

// Validate checks c, with defaults applied, and returns a *outbox.ConfigError naming the
// wrong field.
func (c MemoryCacheConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.TTL < time.Millisecond:
		return &outbox.ConfigError{Field: "ttl", Reason: "must be at least 1ms"}
	case c.MaxEntries < 1:
		return &outbox.ConfigError{Field: "max_entries", Reason: "must be at least 1"}
	}
	return nil
}

// MemoryCache is an in-process Cache, bounded (least recently used entries are evicted) and
// safe for concurrent use. Each replica has its own: a write is seen at once on its replica
// only (other replicas wait with the write's Token, or share a Redis cache instead).
type MemoryCache struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	ll *list.List // of *memEntry, most recently used first
	m  map[string]*list.Element
}

type memEntry struct {
	s       State
	expires time.Time
}

// NewMemoryCache validates cfg and returns an empty MemoryCache.
func NewMemoryCache(cfg MemoryCacheConfig) (*MemoryCache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &MemoryCache{ttl: cfg.TTL, max: cfg.MaxEntries, ll: list.New(), m: make(map[string]*list.Element)}, nil
}

// Get returns a copy of the cached state of key, if it has not expired.
func (c *MemoryCache) Get(_ context.Context, key string) (State, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.live(key, time.Now())
	if !ok {
		return State{}, false, nil
	}
	c.ll.MoveToFront(el)
	s := el.Value.(*memEntry).s
	s.Value = append([]byte(nil), s.Value...)
	return s, true, nil
}

// Put stores a copy of s unless a live entry of its key has a version at least s.Version.
func (c *MemoryCache) Put(_ context.Context, s State) (bool, error) {
	if err := s.Check(); err != nil {
		return false, err
	}
	s.Value = append([]byte(nil), s.Value...)
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.live(s.Key, now); ok {
		e := el.Value.(*memEntry)
		if e.s.Version >= s.Version {
			return false, nil
		}
		e.s, e.expires = s, now.Add(c.ttl)
		c.ll.MoveToFront(el)
		return true, nil
	}
	c.m[s.Key] = c.ll.PushFront(&memEntry{s: s, expires: now.Add(c.ttl)})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.m, last.Value.(*memEntry).s.Key)
	}
	return true, nil
}

// Len returns the number of entries held, expired ones not yet removed included.
func (c *MemoryCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}

// live returns key's element if it has not expired, and removes it if it has.
func (c *MemoryCache) live(key string, now time.Time) (*list.Element, bool) {
	el, ok := c.m[key]
	if !ok {
		return nil, false
	}
	if !now.Before(el.Value.(*memEntry).expires) {
		c.ll.Remove(el)
		delete(c.m, key)
		return nil, false
	}
	return el, true
}
