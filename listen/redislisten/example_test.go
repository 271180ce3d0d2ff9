package redislisten_test

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/listen"
	"github.com/outboxgo/outbox/listen/redislisten"
)

// Example shows the compare-and-set: a late, older state never replaces a newer one.
func Example() {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer client.Close()
	prefix := "example:" + outbox.NewID().String() + ":" // private on a shared server
	cache, err := redislisten.New(redislisten.Config{Client: client, Prefix: prefix, TTL: time.Minute})
	if err != nil {
		panic(err)
	}
	defer client.Del(ctx, prefix+"user-1")

	for _, s := range []listen.State{
		{Key: "user-1", Version: 2, Value: []byte("Ada Lovelace")}, // the write, at commit
		{Key: "user-1", Version: 1, Value: []byte("Ada")},          // a late apply of an older event
	} {
		stored, err := cache.Put(ctx, s)
		if err != nil {
			panic(err)
		}
		fmt.Printf("put version %d: %v\n", s.Version, stored)
	}
	s, _, err := cache.Get(ctx, "user-1")
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s (version %d)\n", s.Value, s.Version)
	// Output:
	// put version 2: true
	// put version 1: false
	// Ada Lovelace (version 2)
}
