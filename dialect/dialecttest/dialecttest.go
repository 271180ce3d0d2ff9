// Package dialecttest is the conformance suite every dialect.Store passes. Each case takes the
// narrowest surface it exercises (dialect.Claimer, dialect.Admin, dialect.Migrator) where one
// suffices; most need the claim path and the admin surface together, and take the Store.
package dialecttest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
)

// NewStore returns a fresh, empty store (own schema or database) for one test, already
// migrated up. The harness closes it in t.Cleanup.
type NewStore func(t *testing.T) dialect.Store

// Run exercises a dialect.Store implementation.
func Run(t *testing.T, newStore NewStore) {
	t.Run("MigrateIdempotent", func(t *testing.T) { t.Parallel(); testMigrate(t, newStore(t)) })
	t.Run("ClaimRoundTrip", func(t *testing.T) { t.Parallel(); testRoundTrip(t, newStore(t)) })
	t.Run("ClaimsAreDisjoint", func(t *testing.T) { t.Parallel(); testDisjoint(t, newStore(t)) })
	t.Run("KeyHeldElsewhereBlocksLaterMessages", func(t *testing.T) { t.Parallel(); testHeldKey(t, newStore(t)) })
	t.Run("RetryPersistsBackoffAndBlocksKey", func(t *testing.T) { t.Parallel(); testRetry(t, newStore(t)) })
	t.Run("ReleaseLeavesRowUnchanged", func(t *testing.T) { t.Parallel(); testRelease(t, newStore(t)) })
	t.Run("DeadLetterRetryPurge", func(t *testing.T) { t.Parallel(); testDead(t, newStore(t)) })
	t.Run("RetainThenDeletePublished", func(t *testing.T) { t.Parallel(); testRetain(t, newStore(t)) })
	t.Run("Partitions", func(t *testing.T) { t.Parallel(); testPartitions(t, newStore(t)) })
	t.Run("Membership", func(t *testing.T) { t.Parallel(); testMembership(t, newStore(t)) })
	t.Run("TopicFilterKeepsKeyOrder", func(t *testing.T) { t.Parallel(); testTopics(t, newStore(t)) })
	t.Run("MaxBytes", func(t *testing.T) { t.Parallel(); testMaxBytes(t, newStore(t)) })
	t.Run("ConcurrentProducersAndRelays", func(t *testing.T) { t.Parallel(); testConcurrent(t, newStore(t)) })
	t.Run("ForeignOutcomeRefused", func(t *testing.T) { t.Parallel(); testForeignOutcome(t, newStore(t)) })
	t.Run("BrokerDuplicatesCounted", func(t *testing.T) { t.Parallel(); testBrokerDuplicates(t, newStore(t)) })
	t.Run("NotAttemptedKeepsAttempts", func(t *testing.T) { t.Parallel(); testNotAttempted(t, newStore(t)) })
	t.Run("TopicErrors", func(t *testing.T) { t.Parallel(); testTopicErrors(t, newStore(t)) })
	t.Run("CheckpointKeepsTheRest", func(t *testing.T) { t.Parallel(); testCheckpoint(t, newStore(t)) })
	t.Run("HeldWriter", func(t *testing.T) { t.Parallel(); testHeld(t, newStore(t)) })
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func msg(key string, n int) outbox.Message {
	return outbox.Message{Topic: "orders.created", Key: key, Type: "order.created",
		Payload: fmt.Appendf(nil, `{"n":%d}`, n), Headers: map[string]string{"n": fmt.Sprint(n)}}
}

func mustEnqueue(t *testing.T, s dialect.Admin, msgs ...outbox.Message) {
	t.Helper()
	if err := s.Enqueue(ctxT(t), msgs...); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
}

func mustClaim(t *testing.T, s dialect.Claimer, req dialect.ClaimRequest) dialect.Claim {
	t.Helper()
	if req.Limit == 0 {
		req.Limit = 100
	}
	c, err := s.Claim(ctxT(t), req)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	return c
}

func finish(t *testing.T, c dialect.Claim, o outbox.Outcome) {
	t.Helper()
	if err := c.Finish(ctxT(t), o); err != nil {
		t.Fatalf("Finish: %v", err)
	}
}

func seqs(recs []outbox.Record) []int64 {
	out := make([]int64, len(recs))
	for i := range recs {
		out[i] = recs[i].Seq
	}
	return out
}

func payloads(recs []outbox.Record) []string {
	out := make([]string, len(recs))
	for i := range recs {
		out[i] = recs[i].Key + string(recs[i].Payload)
	}
	return out
}

func testMigrate(t *testing.T, s dialect.Store) {
	ctx := ctxT(t)
	applied, err := s.MigrateUp(ctx)
	if err != nil {
		t.Fatalf("second MigrateUp: %v", err)
	}
	if len(applied) != 0 {
		t.Fatalf("second MigrateUp applied %v, want nothing", applied)
	}
	st, err := s.MigrationStatus(ctx)
	if err != nil || len(st) == 0 {
		t.Fatalf("MigrationStatus = %v, %v", st, err)
	}
	for _, m := range st {
		if !m.Applied {
			t.Fatalf("migration %d not applied", m.Version)
		}
	}
	down, err := s.MigrateDown(ctx, 0)
	if err != nil || len(down) != len(st) {
		t.Fatalf("MigrateDown = %v, %v", down, err)
	}
	if _, err := s.MigrateDown(ctx, 0); err == nil {
		t.Fatal("MigrateDown with nothing applied: want error")
	}
	up, err := s.MigrateUp(ctx)
	if err != nil || len(up) != len(st) {
		t.Fatalf("MigrateUp after down = %v, %v", up, err)
	}
	mustEnqueue(t, s, msg("k", 1))
}

func testRoundTrip(t *testing.T, s dialect.Store) {
	in := []outbox.Message{msg("a", 1), msg("", 2), msg("b", 3)}
	in[1].Payload = []byte{0, 1, 2, 255}
	in[1].Headers = nil
	mustEnqueue(t, s, in...)
	c := mustClaim(t, s, dialect.ClaimRequest{})
	recs := c.Records()
	if len(recs) != 3 {
		t.Fatalf("claimed %d records, want 3", len(recs))
	}
	if !slices.IsSorted(seqs(recs)) {
		t.Fatalf("records not in id order: %v", seqs(recs))
	}
	for i, r := range recs {
		want := in[i]
		if r.ID != want.ID || r.Topic != want.Topic || r.Key != want.Key || r.Type != want.Type ||
			string(r.Payload) != string(want.Payload) || len(r.Headers) != len(want.Headers) || r.Attempts != 0 {
			t.Errorf("record %d = %+v, want %+v", i, r, want)
		}
		for k, v := range want.Headers {
			if r.Headers[k] != v {
				t.Errorf("record %d header %s = %q, want %q", i, k, r.Headers[k], v)
			}
		}
		if time.Since(r.CreatedAt) > time.Minute || time.Since(r.CreatedAt) < -time.Minute {
			t.Errorf("record %d created_at %v not near now", i, r.CreatedAt)
		}
	}
	finish(t, c, outbox.Outcome{Published: seqs(recs)})
	st, err := s.Stats(ctxT(t))
	if err != nil || st.Pending != 0 {
		t.Fatalf("Stats after publish = %+v, %v", st, err)
	}
	c = mustClaim(t, s, dialect.ClaimRequest{})
	if n := len(c.Records()); n != 0 {
		t.Fatalf("claimed %d records after publish, want 0", n)
	}
	finish(t, c, outbox.Outcome{})
}

func testDisjoint(t *testing.T, s dialect.Store) {
	var msgs []outbox.Message
	for i := range 40 {
		msgs = append(msgs, msg(fmt.Sprint("k", i), i))
	}
	mustEnqueue(t, s, msgs...)
	var (
		mu   sync.Mutex
		seen = map[int64]int{}
		wg   sync.WaitGroup
	)
	claims := make([]dialect.Claim, 4)
	for i := range claims {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := s.Claim(context.Background(), dialect.ClaimRequest{Limit: 15})
			if err != nil {
				t.Errorf("Claim: %v", err)
				return
			}
			claims[i] = c
			mu.Lock()
			defer mu.Unlock()
			for _, r := range c.Records() {
				seen[r.Seq]++
			}
		}()
	}
	wg.Wait()
	total := 0
	for seq, n := range seen {
		if n != 1 {
			t.Errorf("message %d claimed %d times concurrently", seq, n)
		}
		total++
	}
	if total != 40 {
		t.Errorf("concurrent claims took %d distinct messages, want all 40", total)
	}
	for _, c := range claims {
		if c != nil {
			finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
		}
	}
}

func testHeldKey(t *testing.T, s dialect.Store) {
	mustEnqueue(t, s, msg("a", 1), msg("a", 2), msg("b", 1))
	first := mustClaim(t, s, dialect.ClaimRequest{Limit: 1}) // holds a1
	if got := payloads(first.Records()); !slices.Equal(got, []string{`a{"n":1}`}) {
		t.Fatalf("first claim = %v", got)
	}
	second := mustClaim(t, s, dialect.ClaimRequest{Limit: 10})
	if got := payloads(second.Records()); !slices.Equal(got, []string{`b{"n":1}`}) {
		t.Fatalf("second claim = %v, want only b1 (a2 must wait for a1)", got)
	}
	if !blockedHas(second, "a") && len(second.Records()) == 1 {
		// Skipping a2 silently is allowed only if the store reports the key as blocked.
		t.Errorf("second claim Blocked() = %v, want it to name key a", second.Blocked())
	}
	finish(t, second, outbox.Outcome{Published: seqs(second.Records())})
	finish(t, first, outbox.Outcome{Published: seqs(first.Records())})
	third := mustClaim(t, s, dialect.ClaimRequest{Limit: 10})
	if got := payloads(third.Records()); !slices.Equal(got, []string{`a{"n":2}`}) {
		t.Fatalf("third claim = %v, want a2", got)
	}
	finish(t, third, outbox.Outcome{Published: seqs(third.Records())})
}

func testRetry(t *testing.T, s dialect.Store) {
	mustEnqueue(t, s, msg("a", 1), msg("a", 2), msg("b", 1))
	c := mustClaim(t, s, dialect.ClaimRequest{})
	recs := c.Records()
	if len(recs) != 3 {
		t.Fatalf("claimed %d, want 3", len(recs))
	}
	// a1 fails; a2 is not attempted (released); b1 is published.
	finish(t, c, outbox.Outcome{
		Published: []int64{recs[2].Seq},
		Retry:     []outbox.Retry{{Seq: recs[0].Seq, Delay: time.Hour, Error: "broker down"}},
	})
	c = mustClaim(t, s, dialect.ClaimRequest{})
	if n := len(c.Records()); n != 0 {
		t.Fatalf("claimed %v while a1 backs off; a2 must wait behind it", payloads(c.Records()))
	}
	finish(t, c, outbox.Outcome{})
	st, err := s.Stats(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Pending != 2 || st.Ready != 1 || st.Retrying != 1 {
		t.Fatalf("Stats = %+v, want pending 2, ready 1, retrying 1", st)
	}
	// A short delay becomes claimable again with attempts and error persisted.
	mustEnqueue(t, s, msg("c", 1))
	c = mustClaim(t, s, dialect.ClaimRequest{})
	cr := c.Records()
	if len(cr) != 1 {
		t.Fatalf("claimed %v, want c1", payloads(cr))
	}
	finish(t, c, outbox.Outcome{Retry: []outbox.Retry{{Seq: cr[0].Seq, Delay: time.Millisecond, Error: "x"}}})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c = mustClaim(t, s, dialect.ClaimRequest{})
		if len(c.Records()) == 1 {
			break
		}
		finish(t, c, outbox.Outcome{})
		if time.Now().After(deadline) {
			t.Fatal("retried message never became claimable")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := c.Records()[0]; got.Attempts != 1 || got.Key != "c" {
		t.Fatalf("retried record = %+v, want key c with attempts 1", got)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
}

func testRelease(t *testing.T, s dialect.Store) {
	mustEnqueue(t, s, msg("a", 1))
	c := mustClaim(t, s, dialect.ClaimRequest{})
	finish(t, c, outbox.Outcome{})
	c = mustClaim(t, s, dialect.ClaimRequest{})
	if recs := c.Records(); len(recs) != 1 || recs[0].Attempts != 0 {
		t.Fatalf("after release: %+v, want the message with attempts 0", recs)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
}

// testForeignOutcome: an outcome naming a message the claim does not hold is refused whole —
// not even the held message changes — and the claim's messages are released.
func testForeignOutcome(t *testing.T, s dialect.Store) {
	mustEnqueue(t, s, msg("a", 1), msg("b", 2))
	c := mustClaim(t, s, dialect.ClaimRequest{Limit: 1})
	recs := c.Records()
	if len(recs) != 1 {
		t.Fatalf("claim of limit 1: %d records", len(recs))
	}
	held := recs[0].Seq
	foreign := held + 1_000_000
	for _, o := range []outbox.Outcome{
		{Published: []int64{held, foreign}},
		{Published: []int64{held}, Retry: []outbox.Retry{{Seq: foreign, Error: "x"}}},
		{Published: []int64{held}, Dead: []outbox.Dead{{Seq: foreign, Error: "x"}}},
	} {
		if err := c.Finish(ctxT(t), o); err == nil {
			t.Fatalf("Finish(%+v) of a claim holding only %d: no error", o, held)
		}
		c = mustClaim(t, s, dialect.ClaimRequest{Limit: 1})
		if got := seqs(c.Records()); len(got) != 1 || got[0] != held || c.Records()[0].Attempts != 0 {
			t.Fatalf("after a refused outcome: claimed %+v, want message %d unchanged", c.Records(), held)
		}
	}
	finish(t, c, outbox.Outcome{Published: []int64{held}})
	c = mustClaim(t, s, dialect.ClaimRequest{})
	if got := payloads(c.Records()); len(got) != 1 || got[0] != `b{"n":2}` {
		t.Fatalf("after publishing a: %v, want b", got)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
}

func testDead(t *testing.T, s dialect.Store) {
	ctx := ctxT(t)
	mustEnqueue(t, s, msg("a", 1), msg("a", 2))
	c := mustClaim(t, s, dialect.ClaimRequest{})
	recs := c.Records()
	finish(t, c, outbox.Outcome{Dead: []outbox.Dead{{Seq: recs[0].Seq, Error: "too large"}}})
	dls, err := s.DeadLetters(ctx, 0, 10)
	if err != nil || len(dls) != 1 {
		t.Fatalf("DeadLetters = %v, %v", dls, err)
	}
	d := dls[0]
	if d.LastError != "too large" || d.Record.ID != recs[0].ID || d.Record.Attempts != 1 || string(d.Record.Payload) != `{"n":1}` || d.Record.Headers["n"] != "1" {
		t.Fatalf("dead letter = %+v", d)
	}
	// The key moves on once its head is dead-lettered.
	c = mustClaim(t, s, dialect.ClaimRequest{})
	if got := payloads(c.Records()); !slices.Equal(got, []string{`a{"n":2}`}) {
		t.Fatalf("after dead letter claim = %v, want a2", got)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	n, err := s.RetryDeadLetters(ctx, []int64{d.ID})
	if err != nil || n != 1 {
		t.Fatalf("RetryDeadLetters = %d, %v", n, err)
	}
	c = mustClaim(t, s, dialect.ClaimRequest{})
	if r := c.Records(); len(r) != 1 || r[0].ID != recs[0].ID || r[0].Attempts != 0 {
		t.Fatalf("after retry claim = %+v, want the dead letter back with attempts 0", r)
	}
	finish(t, c, outbox.Outcome{Dead: []outbox.Dead{{Seq: c.Records()[0].Seq, Error: "again"}}})
	mustEnqueue(t, s, msg("b", 1))
	c = mustClaim(t, s, dialect.ClaimRequest{})
	finish(t, c, outbox.Outcome{Dead: []outbox.Dead{{Seq: c.Records()[0].Seq, Error: "b"}}})
	st, _ := s.Stats(ctx)
	if st.DeadLetters != 2 {
		t.Fatalf("Stats.DeadLetters = %d, want 2", st.DeadLetters)
	}
	testDeadLetterIDs(t, s)
	n, err = s.PurgeDeadLetters(ctx, nil)
	if err != nil || n != 2 {
		t.Fatalf("PurgeDeadLetters(all) = %d, %v", n, err)
	}
	if dls, _ := s.DeadLetters(ctx, 0, 10); len(dls) != 0 {
		t.Fatalf("dead letters after purge: %v", dls)
	}
}

// testDeadLetterIDs: a store's DeadLetterIDs (when it lists them: dialect.DeadLetterIDLister)
// are the ids DeadLetters lists, in id order, paged by afterID and limit.
func testDeadLetterIDs(t *testing.T, s dialect.Store) {
	l, ok := s.(dialect.DeadLetterIDLister)
	if !ok {
		return
	}
	ctx := ctxT(t)
	dls, err := s.DeadLetters(ctx, 0, 10)
	if err != nil || len(dls) < 2 {
		t.Fatalf("DeadLetters = %v, %v; want 2 or more", dls, err)
	}
	var want []int64
	for _, d := range dls {
		want = append(want, d.ID)
	}
	if got, err := l.DeadLetterIDs(ctx, 0, 10); err != nil || !slices.Equal(got, want) {
		t.Fatalf("DeadLetterIDs(0, 10) = %v, %v; want %v", got, err, want)
	}
	if got, err := l.DeadLetterIDs(ctx, 0, 1); err != nil || !slices.Equal(got, want[:1]) {
		t.Fatalf("DeadLetterIDs(0, 1) = %v, %v; want %v", got, err, want[:1])
	}
	if got, err := l.DeadLetterIDs(ctx, want[0], 10); err != nil || !slices.Equal(got, want[1:]) {
		t.Fatalf("DeadLetterIDs(%d, 10) = %v, %v; want %v", want[0], got, err, want[1:])
	}
	if got, err := l.DeadLetterIDs(ctx, want[len(want)-1], 10); err != nil || len(got) != 0 {
		t.Fatalf("DeadLetterIDs after the last = %v, %v; want none", got, err)
	}
}

func testRetain(t *testing.T, s dialect.Store) {
	ctx := ctxT(t)
	mustEnqueue(t, s, msg("a", 1), msg("a", 2))
	c := mustClaim(t, s, dialect.ClaimRequest{Retain: true})
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	c = mustClaim(t, s, dialect.ClaimRequest{Retain: true})
	if n := len(c.Records()); n != 0 {
		t.Fatalf("published rows claimed again: %d", n)
	}
	finish(t, c, outbox.Outcome{})
	if n, err := s.DeletePublished(ctx, time.Hour, 100); err != nil || n != 0 {
		t.Fatalf("DeletePublished(1h) = %d, %v; want 0", n, err)
	}
	if n, err := s.DeletePublished(ctx, 0, 100); err != nil || n != 2 {
		t.Fatalf("DeletePublished(0) = %d, %v; want 2", n, err)
	}
}

func testPartitions(t *testing.T, s dialect.Store) {
	var msgs []outbox.Message
	for i := range 60 {
		msgs = append(msgs, msg(fmt.Sprint("key", i%20), i))
	}
	mustEnqueue(t, s, msgs...)
	keyPart := map[string]int{}
	total := 0
	for p := range 3 {
		c := mustClaim(t, s, dialect.ClaimRequest{Limit: 1000, Partition: p, Partitions: 3})
		for _, r := range c.Records() {
			if q, ok := keyPart[r.Key]; ok && q != p {
				t.Errorf("key %s in partitions %d and %d", r.Key, q, p)
			}
			keyPart[r.Key] = p
			total++
		}
		finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	}
	if total != 60 {
		t.Fatalf("partitions covered %d messages, want 60", total)
	}
	if len(keyPart) != 20 {
		t.Fatalf("saw %d keys, want 20", len(keyPart))
	}
	// Two relays with different worker counts still cover every key exactly once.
	mustEnqueue(t, s, msgs...)
	seen := map[int64]bool{}
	for relay, workers := range []int{2, 3} {
		for slot := range workers {
			c := mustClaim(t, s, dialect.ClaimRequest{Limit: 1000, Partition: relay, Partitions: 2, Slot: slot, Slots: workers})
			for _, r := range c.Records() {
				if seen[r.Seq] {
					t.Errorf("message %d claimed twice", r.Seq)
				}
				seen[r.Seq] = true
			}
			finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
		}
	}
	if len(seen) != 60 {
		t.Fatalf("relays with 2 and 3 workers covered %d of 60 messages", len(seen))
	}
}

func testMaxBytes(t *testing.T, s dialect.Store) {
	big := make([]byte, 600)
	var msgs []outbox.Message
	for i := range 5 {
		m := msg(fmt.Sprint("k", i), i)
		m.Payload = big
		msgs = append(msgs, m)
	}
	mustEnqueue(t, s, msgs...)
	c := mustClaim(t, s, dialect.ClaimRequest{Limit: 100, MaxBytes: 1500})
	if n := len(c.Records()); n != 2 {
		t.Fatalf("claimed %d messages of 600 bytes within 1500 bytes, want 2", n)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	c = mustClaim(t, s, dialect.ClaimRequest{Limit: 100, MaxBytes: 100})
	if n := len(c.Records()); n != 1 {
		t.Fatalf("claimed %d messages with a budget below one message, want 1 (always at least one)", n)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
}

func blockedHas(c dialect.Claim, key string) bool {
	return slices.ContainsFunc(c.Blocked(), func(b dialect.BlockedKey) bool { return b.Key == key })
}

func testMembership(t *testing.T, s dialect.Claimer) {
	ctx := ctxT(t)
	// Another group (relays of other topics) does not count.
	if _, err := s.Heartbeat(ctx, "relay-sms", "notify.sms", time.Minute); err != nil {
		t.Fatal(err)
	}
	a, err := s.Heartbeat(ctx, "relay-a", "", time.Minute)
	if err != nil || a != (dialect.Membership{Index: 0, Count: 1}) {
		t.Fatalf("Heartbeat a = %+v, %v", a, err)
	}
	b, err := s.Heartbeat(ctx, "relay-b", "", time.Minute)
	if err != nil || b != (dialect.Membership{Index: 1, Count: 2}) {
		t.Fatalf("Heartbeat b = %+v, %v", b, err)
	}
	if err := s.Leave(ctx, "relay-a"); err != nil {
		t.Fatal(err)
	}
	b, err = s.Heartbeat(ctx, "relay-b", "", time.Minute)
	if err != nil || b != (dialect.Membership{Index: 0, Count: 1}) {
		t.Fatalf("Heartbeat b after a left = %+v, %v", b, err)
	}
	if _, err := s.Heartbeat(ctx, "relay-c", "", time.Minute); err != nil {
		t.Fatal(err)
	}
	// relay-b goes silent: a short ttl seen by c forgets it.
	time.Sleep(20 * time.Millisecond)
	c, err := s.Heartbeat(ctx, "relay-c", "", 10*time.Millisecond)
	if err != nil || c != (dialect.Membership{Index: 0, Count: 1}) {
		t.Fatalf("Heartbeat c with b expired = %+v, %v", c, err)
	}
}

func testTopics(t *testing.T, s dialect.Store) {
	a1, a2, b1 := msg("a", 1), msg("a", 2), msg("b", 1)
	a1.Topic, a2.Topic, b1.Topic = "notify.email", "notify.sms", "notify.sms"
	mustEnqueue(t, s, a1, a2, b1)
	c := mustClaim(t, s, dialect.ClaimRequest{Topics: []string{"notify.sms"}})
	if got := payloads(c.Records()); !slices.Equal(got, []string{`b{"n":1}`}) {
		t.Fatalf("sms claim = %v, want only b1 (a2 waits for a1 on the email topic)", got)
	}
	if !blockedHas(c, "a") {
		t.Errorf("sms claim Blocked() = %v, want key a", c.Blocked())
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	c = mustClaim(t, s, dialect.ClaimRequest{Topics: []string{"notify.email"}})
	if got := payloads(c.Records()); !slices.Equal(got, []string{`a{"n":1}`}) {
		t.Fatalf("email claim = %v, want a1", got)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
	c = mustClaim(t, s, dialect.ClaimRequest{Topics: []string{"notify.sms"}})
	if got := payloads(c.Records()); !slices.Equal(got, []string{`a{"n":2}`}) {
		t.Fatalf("sms claim after a1 = %v, want a2", got)
	}
	finish(t, c, outbox.Outcome{Published: seqs(c.Records())})
}
