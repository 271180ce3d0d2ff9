package redislisten

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/listen"
)

// DefaultPrefix is the default Config.Prefix.
const DefaultPrefix = "listen:"

// Config configures a Cache.
type Config struct {
	// Client is the Redis client (a *redis.Client, *redis.ClusterClient or
	// *redis.Ring). Required; the Cache does not close it.
	Client redis.UniversalClient
	// Prefix is prepended to every state key: the cache of one service on a shared server.
	// Default DefaultPrefix.
	Prefix string
	// TTL is how long an entry is kept after its Put. It must exceed the self-consumer's lag
	// (see package listen). Default listen.DefaultTTL; at least 1ms.
	TTL time.Duration
}

func (c Config) withDefaults() Config {
	c.Prefix = cmp.Or(c.Prefix, DefaultPrefix)
	c.TTL = cmp.Or(c.TTL, listen.DefaultTTL)
	return c
}

// Validate checks c, with defaults applied, and returns a *outbox.ConfigError naming the
// wrong field.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Client == nil:
		return &outbox.ConfigError{Field: "client", Reason: "required"}
	case c.TTL < time.Millisecond:
		return &outbox.ConfigError{Field: "ttl", Reason: "must be at least 1ms"}
	}
	return nil
}

// put stores the state unless the key holds a version at least as great. Versions are
// compared as decimal strings of positive integers without leading zeros (by length, then
// digit by digit), exactly for every int64, where Lua's numbers (doubles) would round
// beyond 2^53.
var put = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'v')
if cur then
  local new = ARGV[1]
  if #cur > #new or (#cur == #new and cur >= new) then
    return 0
  end
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

// Cache is a listen.Cache on Redis, shared by the replicas of a service: a write on one is
// seen at once by reads on all. Each state is a hash (fields v, the version, and d, the
// value) under Prefix + key, expiring TTL after its last Put. It is safe for concurrent
// use.
type Cache struct {
	client redis.UniversalClient
	prefix string
	ttl    time.Duration
}

var _ listen.Cache = (*Cache)(nil)

// New validates cfg and returns a Cache. It does not contact the server.
func New(cfg Config) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Cache{client: cfg.Client, prefix: cfg.Prefix, ttl: cfg.TTL}, nil
}

// Get returns the cached state of key.
func (c *Cache) Get(ctx context.Context, key string) (listen.State, bool, error) {
	vals, err := c.client.HMGet(ctx, c.prefix+key, "v", "d").Result()
	if err != nil {
		return listen.State{}, false, fmt.Errorf("redislisten: reading %q: %w", key, err)
	}
	if len(vals) != 2 || vals[0] == nil {
		return listen.State{}, false, nil
	}
	vs, ok1 := vals[0].(string)
	d, ok2 := vals[1].(string)
	v, err := strconv.ParseInt(vs, 10, 64)
	if !ok1 || !ok2 || err != nil {
		return listen.State{}, false, fmt.Errorf("redislisten: %q holds no state (version %v): %w", key, vals[0], errCorrupt)
	}
	return listen.State{Key: key, Version: v, Value: []byte(d)}, true, nil
}

var errCorrupt = errors.New("unexpected entry")

// Put stores s unless the key holds a version at least s.Version, atomically (one Lua
// script), and sets its expiry.
func (c *Cache) Put(ctx context.Context, s listen.State) (bool, error) {
	if err := s.Check(); err != nil {
		return false, err
	}
	value := s.Value
	if value == nil {
		value = []byte{}
	}
	n, err := put.Run(ctx, c.client, []string{c.prefix + s.Key}, strconv.FormatInt(s.Version, 10), value, c.ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("redislisten: storing %q version %d: %w", s.Key, s.Version, err)
	}
	return n == 1, nil
}
