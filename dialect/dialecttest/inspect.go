package dialecttest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
)

// Inspectable is a store that also implements the optional inspection and replay surfaces.
type Inspectable interface {
	dialect.Store
	dialect.Inspector
	dialect.Replayer
}

// RunInspect exercises dialect.Inspector and dialect.Replayer. newStore's stores must
// implement both.
func RunInspect(t *testing.T, newStore NewStore) {
	get := func(t *testing.T) Inspectable {
		s := newStore(t)
		is, ok := s.(Inspectable)
		if !ok {
			t.Fatalf("%T does not implement dialect.Inspector and dialect.Replayer", s)
		}
		return is
	}
	t.Run("Topics", func(t *testing.T) { t.Parallel(); testTopicStats(t, get(t)) })
	t.Run("Relays", func(t *testing.T) { t.Parallel(); testRelays(t, get(t)) })
	t.Run("ReplayWindow", func(t *testing.T) { t.Parallel(); testReplayWindow(t, get(t)) })
	t.Run("ReplayFilters", func(t *testing.T) { t.Parallel(); testReplayFilters(t, get(t)) })
	t.Run("ReplayBounded", func(t *testing.T) { t.Parallel(); testReplayBounded(t, get(t)) })
}

func topicMsg(topic, key string, n int) outbox.Message {
	m := msg(key, n)
	m.Topic = topic
	return m
}

// testTopicStats: every topic with unpublished messages or dead letters, with its counts and
// the error written last, most pending first then by name; published rows do not count.
func testTopicStats(t *testing.T, s Inspectable) {
	ctx := ctxT(t)
	// d: published and retained only, so not listed.
	mustEnqueue(t, s, topicMsg("d", "k", 0))
	c := mustClaim(t, s, dialect.ClaimRequest{Retain: true})
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	// c: dead letters only.
	mustEnqueue(t, s, topicMsg("c", "x", 1), topicMsg("c", "y", 2))
	c = mustClaim(t, s, dialect.ClaimRequest{})
	var o outbox.Outcome
	for _, r := range c.Records() {
		o.Dead = append(o.Dead, outbox.Dead{Seq: r.Seq, Error: "rejected"})
	}
	finish(t, c, o)
	// a: three pending, of which one failed twice (backing off an hour), one failed once
	// later (ready); b: one pending and one dead letter; e: one pending.
	mustEnqueue(t, s, topicMsg("a", "a1", 1), topicMsg("a", "a2", 2), topicMsg("a", "a3", 3), topicMsg("b", "b1", 1), topicMsg("e", "e1", 1))
	c = mustClaim(t, s, dialect.ClaimRequest{})
	recs := c.Records()
	if len(recs) != 5 {
		t.Fatalf("claimed %d, want 5", len(recs))
	}
	finish(t, c, outbox.Outcome{Retry: []outbox.Retry{{Seq: recs[0].Seq, Error: "first"}}})
	c = mustClaim(t, s, dialect.ClaimRequest{Limit: 1})
	finish(t, c, outbox.Outcome{Retry: []outbox.Retry{{Seq: c.Records()[0].Seq, Delay: time.Hour, Error: "timeout a1"}}})
	time.Sleep(5 * time.Millisecond) // a later error time on clocks of coarse precision
	c = mustClaim(t, s, dialect.ClaimRequest{})
	var a2 int64
	for _, r := range c.Records() {
		if r.Key == "a2" {
			a2 = r.Seq
		}
	}
	if a2 == 0 {
		t.Fatalf("a2 not claimable: %+v", c.Records())
	}
	finish(t, c, outbox.Outcome{Retry: []outbox.Retry{{Seq: a2, Error: "refused a2"}}})
	mustEnqueue(t, s, topicMsg("b", "b2", 2))
	c = mustClaim(t, s, dialect.ClaimRequest{Topics: []string{"b"}})
	for _, r := range c.Records() {
		if r.Key == "b2" {
			finish(t, c, outbox.Outcome{Dead: []outbox.Dead{{Seq: r.Seq, Error: "bad"}}})
		}
	}

	got, err := s.Topics(ctx, 100)
	if err != nil {
		t.Fatalf("Topics: %v", err)
	}
	names := make([]string, len(got))
	for i, ts := range got {
		names[i] = ts.Topic
	}
	if want := []string{"a", "b", "e", "c"}; !slices.Equal(names, want) {
		t.Fatalf("Topics = %v, want %v (most pending first, then by name)", names, want)
	}
	a := got[0]
	if a.Pending != 3 || a.Ready != 2 || a.Retrying != 2 || a.DeadLetters != 0 || a.LastError != "refused a2" || a.OldestPending <= 0 || a.OldestPending > time.Minute {
		t.Fatalf("topic a = %+v; want 3 pending, 2 ready, 2 retrying, last error %q, a small age", a, "refused a2")
	}
	if b := got[1]; b.Pending != 1 || b.Ready != 1 || b.Retrying != 0 || b.DeadLetters != 1 || b.LastError != "" {
		t.Fatalf("topic b = %+v; want 1 pending and ready, 1 dead letter, no error", b)
	}
	if cs := got[3]; cs.Pending != 0 || cs.Ready != 0 || cs.DeadLetters != 2 || cs.OldestPending != 0 || cs.LastError != "" {
		t.Fatalf("topic c = %+v; want only 2 dead letters", cs)
	}
	page, err := s.Topics(ctx, 2)
	if err != nil || len(page) != 2 || page[0].Topic != "a" || page[1].Topic != "b" {
		t.Fatalf("Topics(2) = %+v, %v; want a and b", page, err)
	}
}

// testRelays: the membership rows, by group, each group in the order a Heartbeat shares the
// key space in.
func testRelays(t *testing.T, s Inspectable) {
	ctx := ctxT(t)
	members := map[string]dialect.Membership{}
	for _, r := range []struct{ id, group string }{{"relay-b", ""}, {"relay-sms", "notify.sms"}, {"relay-a", ""}} {
		if _, err := s.Heartbeat(ctx, r.id, r.group, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct{ id, group string }{{"relay-b", ""}, {"relay-sms", "notify.sms"}, {"relay-a", ""}} {
		m, err := s.Heartbeat(ctx, r.id, r.group, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		members[r.id] = m
	}
	got, err := s.Relays(ctx)
	if err != nil {
		t.Fatalf("Relays: %v", err)
	}
	if len(got) != 3 {
		t.Fatalf("Relays = %+v, want 3", got)
	}
	groups := map[string][]string{}
	for _, r := range got {
		groups[r.Group] = append(groups[r.Group], r.ID)
		if r.HeartbeatAge < 0 || r.HeartbeatAge > 30*time.Second {
			t.Fatalf("relay %s heartbeat age %v, want a few milliseconds", r.ID, r.HeartbeatAge)
		}
	}
	for _, r := range got {
		m, err := dialect.MembershipOf(groups[r.Group], r.ID)
		if err != nil || m != members[r.ID] {
			t.Fatalf("relay %s: place %+v among %v (%v), but its Heartbeat said %+v", r.ID, m, groups[r.Group], err, members[r.ID])
		}
	}
	if got[0].Group != "" || got[2].Group != "notify.sms" {
		t.Fatalf("Relays = %+v, want them by group", got)
	}
	if err := s.Leave(ctx, "relay-a"); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Relays(ctx); err != nil || len(got) != 2 {
		t.Fatalf("Relays after a left = %+v, %v", got, err)
	}
}

// publishRetained enqueues msgs, then claims and publishes them in retention mode, after
// failing each once (so their attempts are 1), and returns their sequence numbers.
func publishRetained(t *testing.T, s Inspectable, msgs ...outbox.Message) []int64 {
	t.Helper()
	mustEnqueue(t, s, msgs...)
	c := mustClaim(t, s, dialect.ClaimRequest{Limit: 1000, Retain: true})
	var o outbox.Outcome
	for _, r := range c.Records() {
		o.Retry = append(o.Retry, outbox.Retry{Seq: r.Seq, Error: "once"})
	}
	finish(t, c, o)
	c = mustClaim(t, s, dialect.ClaimRequest{Limit: 1000, Retain: true})
	if len(c.Records()) != len(msgs) {
		t.Fatalf("claimed %d of %d again", len(c.Records()), len(msgs))
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	return seqs(c.Records())
}

// boundary returns a time strictly after every commit so far and before every later one
// (the databases and the test share the clock).
func boundary() time.Time {
	time.Sleep(3 * time.Millisecond)
	b := time.Now()
	time.Sleep(3 * time.Millisecond)
	return b
}

func pendingCount(t *testing.T, s dialect.Admin) int64 {
	t.Helper()
	st, err := s.Stats(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	return st.Pending
}

// testReplayWindow: a replay moves exactly the messages published in [from, to) to the end
// of the queue, with their message ids, contents and key order, attempts reset; a count
// changes nothing; the messages published before and after stay retained.
func testReplayWindow(t *testing.T, s Inspectable) {
	ctx := ctxT(t)
	before := publishRetained(t, s, msg("k1", 0), msg("k2", 0))
	from := boundary()
	var window []outbox.Message
	for i := range 7 {
		m := msg(fmt.Sprint("k", i%3), i+1)
		m.Headers["h"] = "v"
		m.ID = uuid.New()
		window = append(window, m)
	}
	window[4].Key = "" // one without a key
	publishRetained(t, s, window...)
	to := boundary()
	after := publishRetained(t, s, msg("k1", 100))
	// A message still waiting on k1: the replayed k1 messages come after it.
	mustEnqueue(t, s, msg("k1", 50))

	f := dialect.ReplayFilter{From: from, To: to}
	if n, err := s.CountPublished(ctx, f); err != nil || n != 7 {
		t.Fatalf("CountPublished = %d, %v; want 7", n, err)
	}
	if p := pendingCount(t, s); p != 1 {
		t.Fatalf("pending after a count = %d, want 1", p)
	}
	var progress []int64
	n, err := dialect.Replay(ctx, s, f, 3, func(done int64) { progress = append(progress, done) })
	if err != nil || n != 7 {
		t.Fatalf("Replay = %d, %v; want 7", n, err)
	}
	if !slices.Equal(progress, []int64{3, 6, 7}) {
		t.Fatalf("progress = %v, want 3, 6, 7 (batches of 3)", progress)
	}
	if n, err := s.CountPublished(ctx, f); err != nil || n != 0 {
		t.Fatalf("CountPublished after the replay = %d, %v; want 0", n, err)
	}
	all := dialect.ReplayFilter{From: from.Add(-time.Hour), To: to.Add(time.Hour)}
	if n, err := s.CountPublished(ctx, all); err != nil || n != int64(len(before)+len(after)) {
		t.Fatalf("CountPublished of the rest = %d, %v; want %d", n, err, len(before)+len(after))
	}
	c := mustClaim(t, s, dialect.ClaimRequest{Limit: 100})
	recs := c.Records()
	finish(t, c, outbox.Outcome{})
	if len(recs) != 8 {
		t.Fatalf("claimed %d after the replay, want the waiting one and the 7 replayed", len(recs))
	}
	if string(recs[0].Payload) != `{"n":50}` {
		t.Fatalf("first claimed %s, want the message that waited before the replay", recs[0].Payload)
	}
	for i, r := range recs[1:] {
		w := window[i]
		if r.ID != w.ID || r.Key != w.Key || r.Topic != w.Topic || r.Type != w.Type || string(r.Payload) != string(w.Payload) ||
			r.Headers["h"] != "v" || r.Headers["n"] != w.Headers["n"] || r.Attempts != 0 || r.Seq <= after[0] {
			t.Fatalf("replayed %d = %+v; want %+v, attempts 0, after the last sequence number %d", i, r, w, after[0])
		}
	}
	if err := (dialect.ReplayFilter{From: to, To: from}).Validate(); err == nil {
		t.Fatal("a window ending before it starts: want an error")
	}
	if _, err := s.ReplayPublished(ctx, dialect.ReplayFilter{From: to, To: to}, 10); err == nil {
		t.Fatal("ReplayPublished of an empty window: want an error")
	}
}

// testReplayFilters: topics and keys restrict a replay to exact matches.
func testReplayFilters(t *testing.T, s Inspectable) {
	ctx := ctxT(t)
	from := boundary()
	publishRetained(t, s, topicMsg("a", "k1", 1), topicMsg("a", "k2", 2), topicMsg("b", "k1", 3), topicMsg("b", "", 4), topicMsg("ab", "k1", 5))
	to := boundary()
	for _, tc := range []struct {
		topics, keys []string
		want         int64
	}{
		{nil, nil, 5},
		{[]string{"a"}, nil, 2},
		{[]string{"a", "b"}, nil, 4},
		{nil, []string{"k1"}, 3},
		{[]string{"b"}, []string{"k1"}, 1},
		{[]string{"c"}, nil, 0},
	} {
		f := dialect.ReplayFilter{From: from, To: to, Topics: tc.topics, Keys: tc.keys}
		if n, err := s.CountPublished(ctx, f); err != nil || n != tc.want {
			t.Fatalf("CountPublished(topics %v, keys %v) = %d, %v; want %d", tc.topics, tc.keys, n, err, tc.want)
		}
	}
	n, err := dialect.Replay(ctx, s, dialect.ReplayFilter{From: from, To: to, Topics: []string{"b"}, Keys: []string{"k1"}}, 0, nil)
	if err != nil || n != 1 {
		t.Fatalf("Replay(b, k1) = %d, %v; want 1", n, err)
	}
	c := mustClaim(t, s, dialect.ClaimRequest{})
	if r := c.Records(); len(r) != 1 || r[0].Topic != "b" || r[0].Key != "k1" || string(r[0].Payload) != `{"n":3}` {
		t.Fatalf("claimed %+v, want only b/k1", r)
	}
	finish(t, c, outbox.Outcome{})
}

// testReplayBounded: a replay whose window reaches into the future does not take the
// messages it moved again once they are published again (within the window).
func testReplayBounded(t *testing.T, s Inspectable) {
	ctx := ctxT(t)
	from := boundary()
	publishRetained(t, s, msg("k", 1), msg("k", 2))
	f := dialect.ReplayFilter{From: from, To: time.Now().Add(time.Hour)}
	last, err := s.LastSeq(ctx)
	if err != nil || last == 0 {
		t.Fatalf("LastSeq = %d, %v", last, err)
	}
	if n, err := dialect.Replay(ctx, s, f, 1, nil); err != nil || n != 2 {
		t.Fatalf("Replay = %d, %v; want 2", n, err)
	}
	c := mustClaim(t, s, dialect.ClaimRequest{Retain: true})
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	f.MaxSeq = last
	if n, err := s.CountPublished(ctx, f); err != nil || n != 0 {
		t.Fatalf("CountPublished up to the old last sequence number = %d, %v; want 0", n, err)
	}
	f.MaxSeq = 0
	if n, err := s.CountPublished(ctx, f); err != nil || n != 2 {
		t.Fatalf("CountPublished of the republished = %d, %v; want 2", n, err)
	}
	if p := pendingCount(t, s); p != 0 {
		t.Fatalf("pending = %d, want 0", p)
	}
}
