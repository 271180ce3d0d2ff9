package listen

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
)

// State is the state of one key as the service keeps it: in its own table (written by the
// self-consumer) and in the cache (written at commit). A greater Version is newer; the first
// state of a key has Version 1.
type State struct {
	Key     string
	Version int64
	Value   []byte
}

// ErrInvalidState is wrapped by the errors of states a cache refuses: an empty key or a
// version below 1.
var ErrInvalidState = errors.New("listen: invalid state")

// Check returns an error wrapping ErrInvalidState when s cannot be cached.
func (s State) Check() error {
	switch {
	case s.Key == "":
		return fmt.Errorf("%w: empty key", ErrInvalidState)
	case s.Version < 1:
		return fmt.Errorf("%w: key %q: version %d, want at least 1", ErrInvalidState, s.Key, s.Version)
	}
	return nil
}

// Cache holds the latest decided state of keys, for reads and for the next write's decision.
// Implementations are safe for concurrent use.
type Cache interface {
	// Get returns the cached state of key; false when none is cached (never was, expired,
	// evicted).
	Get(ctx context.Context, key string) (State, bool, error)
	// Put stores s, atomically compared by version: it never replaces a cached state of
	// the key whose Version is greater than or equal to s.Version (stored is then false).
	// Entries expire after the cache's TTL.
	Put(ctx context.Context, s State) (stored bool, err error)
}

// MaxTokenIDs bounds the message ids of a parsed Token (it comes from a request header).
const MaxTokenIDs = 64

// ErrInvalidToken is wrapped by ParseToken's errors.
var ErrInvalidToken = errors.New("listen: invalid token")

// Token names the events of one or more writes: a reader waits for their self-consumer
// (WaitApplied) to read its own writes on a replica whose cache does not hold them. Send it
// to the client in a response header (String), take it back from the next request's
// (ParseToken). The zero Token names no event.
type Token struct {
	ids []string
}

// TokenOf returns the token of the given outbox message ids.
func TokenOf(ids ...uuid.UUID) Token {
	t := Token{ids: make([]string, 0, len(ids))}
	for _, id := range ids {
		t.ids = append(t.ids, id.String())
	}
	return t
}

// IDs returns the message ids of t.
func (t Token) IDs() []string { return append([]string(nil), t.ids...) }

// IsZero reports whether t names no event.
func (t Token) IsZero() bool { return len(t.ids) == 0 }

// Join returns a token naming the events of t and o (a client that wrote twice).
func (t Token) Join(o Token) Token {
	ids := make([]string, 0, len(t.ids)+len(o.ids))
	seen := make(map[string]struct{}, cap(ids))
	for _, id := range append(append([]string(nil), t.ids...), o.ids...) {
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			ids = append(ids, id)
		}
	}
	return Token{ids: ids}
}

// String returns the ids separated by commas: a header value.
func (t Token) String() string { return strings.Join(t.ids, ",") }

// ParseToken reads a Token's String: comma-separated message ids (UUIDs), at most
// MaxTokenIDs. An empty string is the zero Token.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Token{}, nil
	}
	parts := strings.Split(s, ",")
	if len(parts) > MaxTokenIDs {
		return Token{}, fmt.Errorf("%w: %d ids, at most %d", ErrInvalidToken, len(parts), MaxTokenIDs)
	}
	ids := make([]uuid.UUID, 0, len(parts))
	for _, p := range parts {
		id, err := uuid.Parse(strings.TrimSpace(p))
		if err != nil {
			return Token{}, fmt.Errorf("%w: %.40q is not a message id", ErrInvalidToken, p)
		}
		ids = append(ids, id)
	}
	return Token{}.Join(TokenOf(ids...)), nil
}
