package dialecttest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
)

// Pausable is a store that also implements dialect.Pauser.
type Pausable interface {
	dialect.Store
	dialect.Pauser
}

// RunPause exercises dialect.Pauser and ClaimRequest.ExcludeTopics. newStore's stores must
// implement dialect.Pauser, and their newest migration must be the one that creates the
// pauses table.
func RunPause(t *testing.T, newStore NewStore) {
	get := func(t *testing.T) Pausable {
		s := newStore(t)
		ps, ok := s.(Pausable)
		if !ok {
			t.Fatalf("%T does not implement dialect.Pauser", s)
		}
		return ps
	}
	t.Run("PauseResumeList", func(t *testing.T) { t.Parallel(); testPauseResume(t, get(t)) })
	t.Run("ExcludeTopicsKeepsKeyOrder", func(t *testing.T) { t.Parallel(); testExcludeTopics(t, get(t)) })
	t.Run("ExcludeManyTopics", func(t *testing.T) { t.Parallel(); testExcludeManyTopics(t, get(t)) })
	t.Run("NoPausesTable", func(t *testing.T) { t.Parallel(); testNoPausesTable(t, get(t)) })
}

// testPauseResume: pauses are listed by kind then name with what was recorded; a second
// pause of the same kind and name is refused and keeps the first; a resume removes one pause
// only, and a resume of what is not paused says so.
func testPauseResume(t *testing.T, s Pausable) {
	ctx := ctxT(t)
	if ps, err := s.ListPauses(ctx); err != nil || len(ps) != 0 {
		t.Fatalf("ListPauses on a new table = %v, %v; want none", ps, err)
	}
	before := time.Now().Add(-2 * time.Second) // the database's clock may lag a little
	for _, p := range []dialect.Pause{
		{Kind: dialect.PauseTopic, Name: "orders.created", Reason: "bad payloads", PausedBy: "ops@example"},
		{Kind: dialect.PauseSink, Name: "orders.created"}, // same name, other kind
		{Kind: dialect.PauseTopic, Name: "Orders.created", Reason: "é ünicode"},
	} {
		if err := s.Pause(ctx, p); err != nil {
			t.Fatalf("Pause(%+v): %v", p, err)
		}
	}
	err := s.Pause(ctx, dialect.Pause{Kind: dialect.PauseTopic, Name: "orders.created", Reason: "again"})
	if !errors.Is(err, dialect.ErrAlreadyPaused) {
		t.Fatalf("second Pause = %v, want ErrAlreadyPaused", err)
	}
	for _, bad := range []dialect.Pause{
		{Kind: "queue", Name: "x"},
		{Kind: dialect.PauseTopic},
		{Kind: dialect.PauseTopic, Name: strings.Repeat("n", dialect.MaxPauseName+1)},
		{Kind: dialect.PauseSink, Name: "x", Reason: strings.Repeat("r", dialect.MaxPauseText+1)},
	} {
		if err := s.Pause(ctx, bad); err == nil {
			t.Errorf("Pause(kind %q, name of %d bytes, reason of %d bytes) = nil, want an error", bad.Kind, len(bad.Name), len(bad.Reason))
		}
	}
	ps, err := s.ListPauses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ kind, name, reason, by string }
	var got []row
	for _, p := range ps {
		got = append(got, row{string(p.Kind), p.Name, p.Reason, p.PausedBy})
		if p.PausedAt.Before(before) || p.PausedAt.After(time.Now().Add(2*time.Second)) {
			t.Errorf("pause %s %q: PausedAt %v, want about now", p.Kind, p.Name, p.PausedAt)
		}
	}
	want := []row{
		{"sink", "orders.created", "", ""},
		{"topic", "Orders.created", "é ünicode", ""},
		{"topic", "orders.created", "bad payloads", "ops@example"},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ListPauses = %+v\nwant %+v", got, want)
	}
	if err := s.Resume(ctx, dialect.PauseTopic, "orders.created"); err != nil {
		t.Fatalf("Resume: %v", err)
	}
	if err := s.Resume(ctx, dialect.PauseTopic, "orders.created"); !errors.Is(err, dialect.ErrNotPaused) {
		t.Fatalf("second Resume = %v, want ErrNotPaused", err)
	}
	if err := s.Resume(ctx, dialect.PauseTopic, "orders.CREATED"); !errors.Is(err, dialect.ErrNotPaused) {
		t.Fatalf("Resume of another case = %v, want ErrNotPaused (names are exact)", err)
	}
	ps, err = s.ListPauses(ctx)
	if err != nil || len(ps) != 2 || ps[0].Kind != dialect.PauseSink || ps[1].Name != "Orders.created" {
		t.Fatalf("ListPauses after the resume = %+v, %v; want the sink and Orders.created", ps, err)
	}
}

// testExcludeTopics: a claim excluding a topic leaves its messages, and the later messages of
// their keys on other topics; keyless messages of the topic block nothing.
// testExcludeManyTopics: a claim excludes as many topics as the relay asks, beyond any
// statement's limit of parameters (70,000: more than MySQL's 65,535 placeholders).
func testExcludeManyTopics(t *testing.T, s Pausable) {
	a1, a2, b1 := msg("a", 1), msg("a", 2), msg("b", 1)
	a1.Topic = "paused"
	mustEnqueue(t, s, a1, a2, b1)
	excluded := make([]string, 0, 70001)
	for i := range 70000 {
		excluded = append(excluded, fmt.Sprintf("tenant-%05d.orders", i))
	}
	excluded = append(excluded, "paused")
	c := mustClaim(t, s, dialect.ClaimRequest{ExcludeTopics: excluded})
	if got := payloads(c.Records()); !slices.Equal(got, []string{`b{"n":1}`}) {
		t.Fatalf("claim excluding 70,001 topics = %v, want b1 (a2 waits for a1)", got)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
}

func testExcludeTopics(t *testing.T, s Pausable) {
	a1, a2, b1, n1, b2 := msg("a", 1), msg("a", 2), msg("b", 1), msg("", 1), msg("b", 2)
	a1.Topic, n1.Topic = "paused", "paused"
	mustEnqueue(t, s, a1, a2, b1, n1, b2)
	req := dialect.ClaimRequest{ExcludeTopics: []string{"paused", "other"}}
	c := mustClaim(t, s, req)
	if got := payloads(c.Records()); !slices.Equal(got, []string{`b{"n":1}`, `b{"n":2}`}) {
		t.Fatalf("claim excluding the paused topic = %v, want b1, b2 (a2 waits for a1)", got)
	}
	if !blockedHas(c, "a") {
		t.Errorf("Blocked() = %v, want key a", c.Blocked())
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	c = mustClaim(t, s, req)
	if n := len(c.Records()); n != 0 {
		t.Fatalf("second claim excluding the paused topic took %d messages: %v", n, payloads(c.Records()))
	}
	finish(t, c, outbox.Outcome{})
	// Resumed: everything left, in order.
	c = mustClaim(t, s, dialect.ClaimRequest{})
	if got := payloads(c.Records()); !slices.Equal(got, []string{`a{"n":1}`, `a{"n":2}`, `{"n":1}`}) {
		t.Fatalf("claim after the resume = %v, want a1, a2, the keyless one", got)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
}

// testNoPausesTable: on a schema without the pauses table, every Pauser method reports
// ErrNoPausesTable.
func testNoPausesTable(t *testing.T, s Pausable) {
	ctx := ctxT(t)
	if _, err := s.MigrateDown(ctx, 1); err != nil {
		t.Fatalf("MigrateDown(1): %v", err)
	}
	if _, err := s.ListPauses(ctx); !errors.Is(err, dialect.ErrNoPausesTable) {
		t.Errorf("ListPauses = %v, want ErrNoPausesTable", err)
	}
	if err := s.Pause(ctx, dialect.Pause{Kind: dialect.PauseTopic, Name: "t"}); !errors.Is(err, dialect.ErrNoPausesTable) {
		t.Errorf("Pause = %v, want ErrNoPausesTable", err)
	}
	if err := s.Resume(ctx, dialect.PauseTopic, "t"); !errors.Is(err, dialect.ErrNoPausesTable) {
		t.Errorf("Resume = %v, want ErrNoPausesTable", err)
	}
	if _, err := s.MigrateUp(ctx); err != nil {
		t.Fatalf("MigrateUp: %v", err)
	}
	if err := s.Pause(ctx, dialect.Pause{Kind: dialect.PauseTopic, Name: "t"}); err != nil {
		t.Errorf("Pause after MigrateUp: %v", err)
	}
}
