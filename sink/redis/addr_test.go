package redis

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/outboxgo/outbox"
)

// TestAddrNotEchoed: a redis:// URL or user:password@ in Addr is refused before anything
// dials it, and the error does not quote it.
func TestAddrNotEchoed(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"redis://:hunter2@h:6379", "u:hunter2@h:6379", "h:6379?password=hunter2"} {
		_, err := New(context.Background(), Config{Addr: addr})
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != "addr" {
			t.Fatalf("New(%q) = %v, want an addr ConfigError", addr, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("New(%q): %v quotes the secret", addr, err)
		}
	}
}
