package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/sqlite"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
)

type recordingSink struct {
	mu    sync.Mutex
	byKey map[string][]string
}

func (s *recordingSink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.byKey[m.Key] = append(s.byKey[m.Key], string(m.Payload))
	}
	return make([]error, len(msgs))
}

func (s *recordingSink) Close() error { return nil }

// TestRelayUnreadableRowStallsNothing is the case: 200 rows over 20 keys, one with
// message_id 'not-a-uuid'. The relay publishes the other 199 in per-key order and the bad
// row lands in the dead-letter table naming message_id.
func TestRelayUnreadableRowStallsNothing(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	s, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(t.TempDir(), "outbox.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		key := fmt.Sprintf("k%02d", i%20)
		if i == 57 {
			if _, err := s.DB().ExecContext(ctx, `INSERT INTO outbox (message_id, topic, key, payload) VALUES ('not-a-uuid', 't', ?, ?)`,
				key, fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := s.Enqueue(ctx, outbox.Message{Topic: "t", Key: key, Payload: fmt.Append(nil, i)}); err != nil {
			t.Fatal(err)
		}
	}
	sk := &recordingSink{byKey: map[string][]string{}}
	src, err := poll.New(poll.Config{Store: s, PollInterval: 10 * time.Millisecond, BatchSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(relay.Config{Source: src, Sink: sk})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := s.Stats(ctx)
		if err == nil && st.Pending == 0 {
			if st.DeadLetters != 1 {
				t.Fatalf("Stats = %+v, want 1 dead letter", st)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still pending: %+v, %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	dls, err := s.DeadLetters(ctx, 0, 10)
	if err != nil || len(dls) != 1 || !strings.Contains(dls[0].LastError, "column message_id") || string(dls[0].Record.Payload) != "57" {
		t.Fatalf("dead letters = %+v, %v", dls, err)
	}
	sk.mu.Lock()
	defer sk.mu.Unlock()
	n := 0
	for k, got := range sk.byKey {
		var want []string
		for i := range 200 {
			if fmt.Sprintf("k%02d", i%20) == k && i != 57 {
				want = append(want, fmt.Sprint(i))
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("key %s published %v, want %v", k, got, want)
		}
		n += len(got)
	}
	if n != 199 {
		t.Fatalf("published %d, want 199", n)
	}
}
