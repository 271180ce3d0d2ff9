package inboxtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
)

// stats is the suite's test of Inbox.Stats: the consumer's processed ids (committed ones,
// dead letters included), the latest processing time and the dead letters not retried; other
// consumers' rows do not count.
func stats(t *testing.T, s *suite) {
	ctx := context.Background()
	get := func() inbox.Stats {
		t.Helper()
		st, err := s.in.Stats(ctx)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		return st
	}
	if st := get(); st != (inbox.Stats{}) {
		t.Fatalf("Stats of an empty inbox = %+v", st)
	}
	start := time.Now().Add(-time.Second)
	a, b := Msg("k", 1), Msg("k", 2)
	s.want(a, inbox.Applied)
	s.want(b, inbox.Applied)
	s.want(a, inbox.Duplicate)
	if _, err := s.deliver(Msg("k", 3), func(context.Context, outbox.Tx, inbox.Message) error { return errors.New("no") }); err == nil {
		t.Fatal("want the handler's error")
	}
	if err := s.in.Reject(ctx, Msg("", 0), errors.New("unreadable")); err != nil {
		t.Fatal(err)
	}
	st := get()
	if st.Processed != 3 || st.ProcessedCapped || st.DeadLetters != 1 || st.LastProcessedAt.Before(start) || st.LastProcessedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("Stats = %+v; want 3 processed (a, b, the rejected), 1 dead letter, processed just now", st)
	}
	dead, err := s.in.DeadLetters(ctx, 0, 10)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters = %+v, %v", dead, err)
	}
	if _, err := s.in.RetryDeadLetters(ctx, []int64{dead[0].ID}); err != nil {
		t.Fatal(err)
	}
	if st := get(); st.DeadLetters != 0 {
		t.Fatalf("Stats after a retry mark = %+v; want no dead letter", st)
	}
	cfg := s.env.Config
	cfg.Consumer = "shipping"
	other, err := inbox.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := other.Stats(ctx); err != nil || st != (inbox.Stats{}) {
		t.Fatalf("another consumer's Stats = %+v, %v; want none", st, err)
	}
	if other.Table() != s.in.Table() || s.in.Table() == "" {
		t.Fatalf("Table = %q and %q", other.Table(), s.in.Table())
	}
}
