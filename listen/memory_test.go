package listen_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/listen"
	"github.com/outboxgo/outbox/listen/listentest"
)

func TestMemoryCache(t *testing.T) {
	listentest.CacheSuite(t, func(t *testing.T, ttl time.Duration) listen.Cache {
		c, err := listen.NewMemoryCache(listen.MemoryCacheConfig{TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return c
	})
}

func TestMemoryCacheEviction(t *testing.T) {
	ctx := context.Background()
	c, err := listen.NewMemoryCache(listen.MemoryCacheConfig{MaxEntries: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range []string{"a", "b", "c"} {
		if ok, err := c.Put(ctx, listen.State{Key: k, Version: int64(i + 1)}); err != nil || !ok {
			t.Fatalf("Put(%s) = %v, %v", k, ok, err)
		}
	}
	if _, ok, _ := c.Get(ctx, "a"); !ok { // a is now the most recently used
		t.Fatal("a missing")
	}
	if _, err := c.Put(ctx, listen.State{Key: "d", Version: 1}); err != nil {
		t.Fatal(err)
	}
	if n := c.Len(); n != 3 {
		t.Fatalf("Len = %d, want 3 (the bound)", n)
	}
	for k, want := range map[string]bool{"a": true, "b": false, "c": true, "d": true} {
		if _, ok, _ := c.Get(ctx, k); ok != want {
			t.Errorf("after evicting: %s cached = %v, want %v", k, ok, want)
		}
	}
	// A cached value is a copy: the caller's slice may change.
	v := []byte("x")
	if _, err := c.Put(ctx, listen.State{Key: "e", Version: 1, Value: v}); err != nil {
		t.Fatal(err)
	}
	v[0] = 'y'
	if s, _, _ := c.Get(ctx, "e"); string(s.Value) != "x" {
		t.Fatalf("cached value changed with the caller's slice: %q", s.Value)
	}
}

func TestMemoryCacheConfig(t *testing.T) {
	for _, tt := range []struct {
		field string
		cfg   listen.MemoryCacheConfig
	}{
		{"ttl", listen.MemoryCacheConfig{TTL: time.Microsecond}},
		{"ttl", listen.MemoryCacheConfig{TTL: -time.Second}},
		{"max_entries", listen.MemoryCacheConfig{MaxEntries: -1}},
	} {
		_, err := listen.NewMemoryCache(tt.cfg)
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != tt.field {
			t.Errorf("NewMemoryCache(%+v) = %v, want a ConfigError on %s", tt.cfg, err, tt.field)
		}
	}
}
