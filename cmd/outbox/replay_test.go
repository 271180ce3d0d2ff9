package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/sqlite"
)

// 'outbox replay' counts (--dry-run) and moves the retained messages of a window, topics and
// keys back to the queue, with their message ids.
func TestReplay(t *testing.T) {
	t.Parallel()
	in := sqliteEnv(t)
	in.progressEvery = -1
	in.run(t, "migrate", "up").want(t, 0)
	ctx := context.Background()
	st, err := sqlite.New(ctx, sqlite.Config{Path: strings.TrimPrefix(in.env["OUTBOX_DATABASE_URL"], "sqlite:")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	publish := func(msgs ...outbox.Message) {
		t.Helper()
		if err := st.Enqueue(ctx, msgs...); err != nil {
			t.Fatal(err)
		}
		c, err := st.Claim(ctx, dialect.ClaimRequest{Limit: 100, Retain: true})
		if err != nil {
			t.Fatal(err)
		}
		var o outbox.Outcome
		for _, r := range c.Records() {
			o.Published = append(o.Published, r.Seq)
		}
		if err := c.Finish(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	publish(outbox.Message{Topic: "orders", Key: "old"})
	time.Sleep(5 * time.Millisecond)
	from := time.Now().UTC().Format(time.RFC3339Nano)
	publish(outbox.Message{Topic: "orders", Key: "a"}, outbox.Message{Topic: "orders", Key: "b"}, outbox.Message{Topic: "mail", Key: "a"})

	r := in.run(t, "replay", "--from", from, "--to", "now", "--dry-run").want(t, 0).contains(t, "3 message(s) published from", "would be replayed")
	if lines := progressLines(r.stderr, "replay"); len(lines) != 0 {
		t.Fatalf("a dry run reported progress: %q", lines)
	}
	if s := statusJSONOf(t, in); s.Pending != 0 {
		t.Fatalf("a dry run changed the outbox: pending %d", s.Pending)
	}
	r = in.run(t, "replay", "--from", from, "--to", "now", "--topic", "orders", "--key", "a", "--key", "b", "--json", "--batch", "1").want(t, 0)
	if r.stderr != "" {
		t.Fatalf("replay --json wrote to stderr: %q", r.stderr)
	}
	var got replayJSON
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || got.Matched != 2 || got.Replayed != 2 || got.DryRun {
		t.Fatalf("replay --json = %+v, %v\n%s", got, err, r.stdout)
	}
	r = in.run(t, "replay", "--from", "-1h", "--to", "now", "--batch", "1").want(t, 0).contains(t, "replayed 2 message(s)")
	wantProgress(t, r, "replay", "0/2 (0%)", "1/2 (50%)", "2/2 (100%)")
	if s := statusJSONOf(t, in); s.Pending != 4 {
		t.Fatalf("pending after the replays = %d, want 4", s.Pending)
	}
	in.run(t, "replay", "--from", "-1h", "--to", "now").want(t, 0).contains(t, "replayed 0 message(s)",
		"retention is 0 in this configuration")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"replay", "--to", "now"}, "needs --from"},
		{[]string{"replay", "--from", "now"}, "needs --to"},
		{[]string{"replay", "--from", "yesterday", "--to", "now"}, "not an RFC 3339 time"},
		{[]string{"replay", "--from", "now", "--to", "-1h"}, "must be before"},
		{[]string{"replay", "--from", "-1x", "--to", "now"}, "not a duration"},
		{[]string{"replay", "--from", "-1h", "--to", "now", "--topic", ""}, "must not be empty"},
		{[]string{"replay", "--from", "-1h", "--to", "now", "--batch", "0"}, "--batch"},
	} {
		in.run(t, tc.args...).want(t, 2).contains(t, tc.want)
	}
}
