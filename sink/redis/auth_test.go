package redis_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
	redissink "github.com/outboxgo/outbox/sink/redis"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// TestAuthAtRuntime: the sink's ACL user gets another password after New and its
// connections are killed. Publish fails with Unavailable errors (no attempt is spent) that
// say authentication failed; once the password is restored the sink publishes by itself.
func TestAuthAtRuntime(t *testing.T) {
	t.Parallel()
	c := connect(t)
	prefix := newPrefix(t, c)
	user := "outbox-test-" + strings.ReplaceAll(outbox.NewID().String(), "-", "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acl := func(args ...any) {
		t.Helper()
		if err := c.Do(ctx, append([]any{"ACL", "SETUSER", user}, args...)...).Err(); err != nil {
			t.Fatalf("ACL SETUSER %v: %v", args, err)
		}
	}
	acl("reset", "on", ">right-password", "~"+prefix+"*", "+@all")
	t.Cleanup(func() { _ = c.Do(context.Background(), "ACL", "DELUSER", user).Err() })

	s := newSink(t, redissink.Config{Username: user, Password: "right-password", StreamPrefix: prefix, PublishTimeout: time.Second})
	if err := publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]; err != nil {
		t.Fatalf("before: %v", err)
	}

	acl("resetpass", ">rotated-password")
	if err := c.Do(ctx, "CLIENT", "KILL", "USER", user).Err(); err != nil {
		t.Fatalf("CLIENT KILL USER: %v", err)
	}
	for i := 0; i < 3; i++ {
		err := publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]
		if !sink.IsUnavailable(err) || !strings.Contains(err.Error(), "WRONGPASS") {
			t.Fatalf("publish %d with a refused password: %v, want an Unavailable WRONGPASS error", i, err)
		}
	}

	acl("resetpass", ">right-password")
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing 20s after the password was restored: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A wrong password at start is refused by New.
	_, err := redissink.New(ctx, redissink.Config{Username: user, Password: "rotated-password", StreamPrefix: prefix})
	if !errors.Is(err, redissink.ErrAuth) {
		t.Errorf("New with a wrong password: %v, want ErrAuth", err)
	}
}
