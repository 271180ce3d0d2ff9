package redislisten_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/internal/testutil/service"
	"github.com/outboxgo/outbox/listen"
	"github.com/outboxgo/outbox/listen/listentest"
	"github.com/outboxgo/outbox/listen/redislisten"
)

// redisAddr is the shared test server: OUTBOX_TEST_REDIS_ADDR or 127.0.0.1:6379.
func redisAddr() string {
	if a := os.Getenv("OUTBOX_TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// connect returns a client to the shared server, closed when the test ends.
func connect(t testing.TB) *redis.Client {
	t.Helper()
	service.Require(t, "Redis")
	c := redis.NewClient(&redis.Options{Addr: redisAddr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis is not reachable at %s: %v", redisAddr(), err)
	}
	return c
}

// newPrefix returns a key prefix private to the test; its keys are deleted when it ends.
func newPrefix(t testing.TB, c *redis.Client) string {
	t.Helper()
	prefix := "outbox-test:listen:" + strings.ReplaceAll(outbox.NewID().String(), "-", "") + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		it := c.Scan(ctx, 0, prefix+"*", 1000).Iterator() // the prefix holds no glob character
		var keys []string
		for it.Next(ctx) {
			keys = append(keys, it.Val())
		}
		if err := it.Err(); err != nil {
			t.Errorf("scanning %s*: %v", prefix, err)
		}
		if len(keys) > 0 {
			if err := c.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("deleting the test's keys: %v", err)
			}
		}
	})
	return prefix
}

func newCache(t testing.TB, c *redis.Client, ttl time.Duration) *redislisten.Cache {
	t.Helper()
	cache, err := redislisten.New(redislisten.Config{Client: c, Prefix: newPrefix(t, c), TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return cache
}

func TestCache(t *testing.T) {
	listentest.CacheSuite(t, func(t *testing.T, ttl time.Duration) listen.Cache {
		return newCache(t, connect(t), ttl)
	})
}

// TestCacheLayout: the prefix, the hash and the expiry are as documented; a foreign entry
// under the prefix is an error, not a state.
func TestCacheLayout(t *testing.T) {
	c := connect(t)
	ctx := context.Background()
	prefix := newPrefix(t, c)
	cache, err := redislisten.New(redislisten.Config{Client: c, Prefix: prefix, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Put(ctx, listen.State{Key: "acct-1", Version: 7, Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	h, err := c.HGetAll(ctx, prefix+"acct-1").Result()
	if err != nil || h["v"] != "7" || h["d"] != "x" {
		t.Fatalf("hash = %v, %v", h, err)
	}
	if ttl, err := c.PTTL(ctx, prefix+"acct-1").Result(); err != nil || ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL = %v, %v", ttl, err)
	}
	if err := c.Set(ctx, prefix+"junk", "not a hash", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cache.Get(ctx, "junk"); err == nil {
		t.Fatal("Get of a string key succeeded")
	}
	if err := c.HSet(ctx, prefix+"bad", "v", "x", "d", "y").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cache.Get(ctx, "bad"); err == nil {
		t.Fatal("Get of a hash without a numeric version succeeded")
	}
}

func newEnv(t *testing.T) *listentest.Env {
	pool, schema := pgtest.Schema(t)
	return listentest.NewEnv(t, pool, schema)
}

// TestSharedCacheOtherReplica: POST on replica A, GET on replica B sharing the Redis cache:
// B sees the write at once, before the self-consumer ran; after it ran, the table agrees.
func TestSharedCacheOtherReplica(t *testing.T) {
	c := connect(t)
	env := newEnv(t)
	cache := newCache(t, c, time.Minute)
	a := env.Replica(t, cache, listen.Config{Logger: logtest.New(t)})
	b := env.Replica(t, cache, listen.Config{Logger: logtest.New(t)})
	env.Post(t, a, "acct-1", listentest.Add(5))
	st, ok, err := b.Read(context.Background(), "acct-1")
	if err != nil || !ok || st.Version != 1 || string(st.Value) != "5" {
		t.Fatalf("B's GET = %+v, %v, %v; want version 1 value 5", st, ok, err)
	}
	if n := len(env.Table(t)); n != 0 {
		t.Fatalf("table has %d rows before the self-consumer ran", n)
	}
	// B writes next, deciding on A's version through the cache.
	if st, _ := env.Post(t, b, "acct-1", listentest.Add(1)); st.Version != 2 || string(st.Value) != "6" {
		t.Fatalf("B's write = %+v, want version 2 value 6", st)
	}
	env.Consume(t, b.Handler(env.Apply))
	if row := env.Table(t)["acct-1"]; row.Version != 2 || string(row.Value) != "6" {
		t.Fatalf("table %+v", row)
	}
	// A reads the same shared state (the consumer ran on B; its Put was version-guarded).
	if st, _, _ := a.Read(context.Background(), "acct-1"); st.Version != 2 {
		t.Fatalf("A reads %+v", st)
	}
}

// TestSharedCacheWriteLocked: WriteLocked on two replicas sharing the Redis cache
// serializes concurrent increments: distinct successive versions, none lost.
func TestSharedCacheWriteLocked(t *testing.T) {
	c := connect(t)
	env := newEnv(t)
	cache := newCache(t, c, time.Minute)
	listentest.WriteLockedSerializes(t, env, []*listen.Service{
		env.Replica(t, cache, listen.Config{Logger: logtest.New(t)}),
		env.Replica(t, cache, listen.Config{Logger: logtest.New(t)}),
	})
}

// TestRedisDown: a cache on a server that does not answer reports errors (the Service
// then reads the table and refuses writes: package listen's TestCacheDown).
func TestRedisDown(t *testing.T) {
	service.Require(t, "Redis")
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	cache, err := redislisten.New(redislisten.Config{Client: c})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := cache.Get(ctx, "k"); err == nil {
		t.Fatal("Get succeeded with no server")
	}
	if _, err := cache.Put(ctx, listen.State{Key: "k", Version: 1}); err == nil {
		t.Fatal("Put succeeded with no server")
	}
}

func TestConfigValidate(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer c.Close()
	for _, tt := range []struct {
		field string
		cfg   redislisten.Config
	}{
		{"client", redislisten.Config{}},
		{"ttl", redislisten.Config{Client: c, TTL: time.Microsecond}},
		{"ttl", redislisten.Config{Client: c, TTL: -time.Second}},
	} {
		_, err := redislisten.New(tt.cfg)
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field || !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want a ConfigError on %s", tt.cfg, err, tt.field)
		}
	}
	if _, err := redislisten.New(redislisten.Config{Client: c}); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}
