// Package listentest is the conformance suite of listen.Cache implementations: the tests of
// package listen run it on MemoryCache, those of redislisten on the Redis cache.
package listentest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/outboxgo/outbox/listen"
)

// CacheSuite runs the suite; newCache returns an empty cache of the given TTL, private to
// the test.
func CacheSuite(t *testing.T, newCache func(t *testing.T, ttl time.Duration) listen.Cache) {
	ctx := context.Background()
	put := func(t *testing.T, c listen.Cache, s listen.State, want bool) {
		t.Helper()
		stored, err := c.Put(ctx, s)
		if err != nil || stored != want {
			t.Fatalf("Put(%s v%d) = %v, %v; want %v", s.Key, s.Version, stored, err, want)
		}
	}
	get := func(t *testing.T, c listen.Cache, key string) (listen.State, bool) {
		t.Helper()
		s, ok, err := c.Get(ctx, key)
		if err != nil {
			t.Fatalf("Get(%s): %v", key, err)
		}
		return s, ok
	}
	t.Run("CompareAndSet", func(t *testing.T) {
		c := newCache(t, time.Minute)
		if _, ok := get(t, c, "a"); ok {
			t.Fatal("empty cache holds a")
		}
		put(t, c, listen.State{Key: "a", Version: 2, Value: []byte("two")}, true)
		put(t, c, listen.State{Key: "a", Version: 1, Value: []byte("one")}, false)
		put(t, c, listen.State{Key: "a", Version: 2, Value: []byte("other two")}, false)
		if s, ok := get(t, c, "a"); !ok || s.Version != 2 || string(s.Value) != "two" || s.Key != "a" {
			t.Fatalf("Get(a) = %+v, %v; want version 2 \"two\"", s, ok)
		}
		put(t, c, listen.State{Key: "a", Version: 10, Value: []byte("ten")}, true)
		put(t, c, listen.State{Key: "a", Version: 9, Value: []byte("nine")}, false) // 10 > 9 by number, not by text
		if s, _ := get(t, c, "a"); s.Version != 10 || string(s.Value) != "ten" {
			t.Fatalf("Get(a) = %+v, want version 10", s)
		}
		// Big versions compare exactly (beyond float precision).
		put(t, c, listen.State{Key: "b", Version: 1<<62 + 1, Value: []byte("big")}, true)
		put(t, c, listen.State{Key: "b", Version: 1 << 62, Value: []byte("smaller")}, false)
		// Binary values and empty values round-trip.
		bin := []byte{0, 0xff, '\r', '\n', 0x80}
		put(t, c, listen.State{Key: "c", Version: 1, Value: bin}, true)
		if s, _ := get(t, c, "c"); string(s.Value) != string(bin) {
			t.Fatalf("binary value = %q", s.Value)
		}
		put(t, c, listen.State{Key: "d", Version: 1}, true)
		if s, ok := get(t, c, "d"); !ok || len(s.Value) != 0 {
			t.Fatalf("empty value = %+v, %v", s, ok)
		}
		for _, bad := range []listen.State{{Key: "", Version: 1}, {Key: "e", Version: 0}, {Key: "e", Version: -1}} {
			if _, err := c.Put(ctx, bad); !errors.Is(err, listen.ErrInvalidState) {
				t.Errorf("Put(%+v) = %v, want ErrInvalidState", bad, err)
			}
		}
	})
	t.Run("ConcurrentSameVersion", func(t *testing.T) {
		c := newCache(t, time.Minute)
		const n = 16
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			stored []string
			errs   []error
		)
		for i := range n {
			wg.Go(func() {
				v := "writer " + strconv.Itoa(i)
				ok, err := c.Put(ctx, listen.State{Key: "k", Version: 1, Value: []byte(v)})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
				} else if ok {
					stored = append(stored, v)
				}
			})
		}
		wg.Wait()
		if len(errs) > 0 || len(stored) != 1 {
			t.Fatalf("%d puts of version 1: stored by %v, errors %v; want exactly one", n, stored, errs)
		}
		if s, _ := get(t, c, "k"); string(s.Value) != stored[0] {
			t.Fatalf("cached %q, stored by %q", s.Value, stored[0])
		}
	})
	t.Run("ConcurrentNeverBackwards", func(t *testing.T) {
		c := newCache(t, time.Minute)
		const n = 40
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			v := int64(n - i) // mostly descending, started concurrently
			wg.Go(func() {
				if _, err := c.Put(ctx, listen.State{Key: "k", Version: v, Value: []byte(strconv.FormatInt(v, 10))}); err != nil {
					errs <- err
					return
				}
				s, ok, err := c.Get(ctx, "k")
				switch {
				case err != nil:
					errs <- err
				case !ok || s.Version < v:
					errs <- fmt.Errorf("after Put(v%d), Get = v%d (found %v): moved backwards", v, s.Version, ok)
				case string(s.Value) != strconv.FormatInt(s.Version, 10):
					errs <- fmt.Errorf("version %d holds value %q: not set together", s.Version, s.Value)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if s, _ := get(t, c, "k"); s.Version != n {
			t.Fatalf("final version %d, want %d", s.Version, n)
		}
	})
	t.Run("TTL", func(t *testing.T) {
		const ttl = 400 * time.Millisecond
		c := newCache(t, ttl)
		start := time.Now()
		put(t, c, listen.State{Key: "k", Version: 1, Value: []byte("v")}, true)
		if _, ok := get(t, c, "k"); !ok && time.Since(start) < ttl/2 {
			t.Fatal("entry gone right after its Put")
		}
		deadline := time.Now().Add(ttl + 10*time.Second)
		for {
			if _, ok := get(t, c, "k"); !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("entry still cached %v after its Put (TTL %v)", time.Since(start), ttl)
			}
			time.Sleep(20 * time.Millisecond) // polling for the expiry
		}
		if el := time.Since(start); el < ttl {
			t.Fatalf("entry expired after %v, before the TTL %v", el, ttl)
		}
		// An expired entry no longer guards its version.
		put(t, c, listen.State{Key: "k", Version: 1, Value: []byte("again")}, true)
	})
}
