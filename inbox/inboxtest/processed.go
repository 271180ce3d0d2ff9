package inboxtest

import (
	"context"
	"errors"
	"testing"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
)

// processed is the suite's test of Inbox.Processed: it sees committed deliveries only, of
// its consumer only, every id of the list (across the statement's chunks), dead letters
// included.
func processed(t *testing.T, s *suite) {
	ctx := context.Background()
	is := func(want bool, ids ...string) {
		t.Helper()
		got, err := s.in.Processed(ctx, ids...)
		if err != nil || got != want {
			t.Fatalf("Processed(%d ids) = %v, %v; want %v", len(ids), got, err, want)
		}
	}
	is(true) // no ids
	a, b := Msg("k", 1), Msg("k", 2)
	is(false, a.ID)
	s.want(a, inbox.Applied)
	is(true, a.ID)
	is(true, a.ID, a.ID)
	is(false, a.ID, b.ID)
	is(false, b.ID, a.ID)

	// A failed delivery (rolled back) is not processed.
	if _, err := s.deliver(b, func(context.Context, outbox.Tx, inbox.Message) error { return errors.New("no") }); err == nil {
		t.Fatal("want the handler's error")
	}
	is(false, b.ID)

	// Not before the commit.
	if s.env.Concurrent {
		tx, err := s.env.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if res, err := s.in.Process(ctx, tx, b, s.effect); err != nil || res != inbox.Applied {
			t.Fatalf("process = %v, %v", res, err)
		}
		is(false, b.ID)
		if err := finish(ctx, tx, true); err != nil {
			t.Fatal(err)
		}
		is(true, a.ID, b.ID)
	} else {
		s.want(b, inbox.Applied)
	}

	// Another consumer's ids are not this one's.
	cfg := s.env.Config
	cfg.Consumer = "shipping"
	other, err := inbox.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := other.Processed(ctx, a.ID); err != nil || got {
		t.Fatalf("other consumer: Processed = %v, %v; want false", got, err)
	}

	// A rejected (dead-lettered) message is done with: processed.
	r := Msg("", 0)
	if err := s.in.Reject(ctx, r, errors.New("unreadable")); err != nil {
		t.Fatal(err)
	}
	is(true, r.ID)

	// More ids than one statement takes.
	ds := make([]inbox.Delivery, 1200)
	ids := make([]string, 0, len(ds)+1)
	for i := range ds {
		ds[i] = inbox.Delivery{Message: Msg("", 0)}
		ids = append(ids, ds[i].Message.ID)
	}
	if _, err := s.in.DeliverBatch(ctx, ds, s.effect); err != nil {
		t.Fatal(err)
	}
	is(true, ids...)
	is(false, append(ids, Msg("", 0).ID)...)
	is(false, append([]string{Msg("", 0).ID}, ids...)...)

	if _, err := s.in.Processed(ctx, a.ID, ""); !errors.Is(err, inbox.ErrInvalidMessage) {
		t.Fatalf("empty id: err = %v, want ErrInvalidMessage", err)
	}
}
