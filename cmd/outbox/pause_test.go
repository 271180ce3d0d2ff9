package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// 'outbox pause' and 'outbox resume' against the database: pausing twice and resuming what
// is not paused exit 1, the list shows what was paused (as JSON too), and a relay holds a
// paused topic's messages while the others flow, then publishes them once resumed.
func TestPauseCommands(t *testing.T) {
	t.Parallel()
	in := sqliteEnv(t)
	in.run(t, "pause", "list").want(t, 1).contains(t, "migrate up")
	in.run(t, "migrate", "up").want(t, 0)
	in.run(t, "pause", "list").want(t, 0).contains(t, "nothing is paused")
	in.run(t, "pause", "topic", "orders", "--reason", "consumer deploy").want(t, 0).contains(t, `paused topic "orders"`)
	in.run(t, "pause", "topic", "orders").want(t, 1).contains(t, "paused already")
	in.run(t, "pause", "sink", "webhook").want(t, 0)
	in.run(t, "pause", "list").want(t, 0).contains(t, "KIND", "topic", "orders", "consumer deploy", "outbox CLI", "sink", "webhook")
	var list []pauseJSON
	r := in.run(t, "pause", "list", "--json").want(t, 0)
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 2 || list[0].Kind != "sink" ||
		list[1].Name != "orders" || list[1].Reason != "consumer deploy" || time.Since(list[1].Since) > time.Minute {
		t.Fatalf("pause list --json = %+v, %v\n%s", list, err, r.stdout)
	}
	// outbox status lists them too.
	in.run(t, "status").want(t, 0).contains(t, "paused", "2 (outbox pause list)", "topic orders", "consumer deploy", "sink webhook")
	if ps := statusJSONOf(t, in).Pauses; len(ps) != 2 || ps[1].Name != "orders" || ps[1].Reason != "consumer deploy" {
		t.Fatalf("status --json pauses = %+v", ps)
	}
	in.run(t, "resume", "sink", "webhook").want(t, 0).contains(t, `resumed sink "webhook"`)
	in.run(t, "resume", "sink", "webhook").want(t, 1).contains(t, "not paused")
	for _, args := range [][]string{
		{"pause"}, {"pause", "queue", "x"}, {"pause", "topic"}, {"pause", "topic", "a", "b"}, {"pause", "topic", ""},
		{"resume"}, {"resume", "topic"}, {"pause", "list", "x"},
	} {
		in.run(t, args...).want(t, 2)
	}

	in.run(t, "enqueue", "--topic", "orders", "--key", "k", "--data", `{"n":1}`).want(t, 0)
	in.run(t, "enqueue", "--topic", "mail", "--key", "m", "--data", `{"n":2}`).want(t, 0)
	in.run(t, "enqueue", "--topic", "mail", "--key", "k", "--data", `{"n":3}`).want(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		done <- in.runCtx(t, ctx, "relay", "--sink-type", "stdout", "--poll-interval", "10ms", "--relay-pause-interval", "20ms")
	}()
	waitFor(t, func() bool { return statusJSONOf(t, in).Pending == 2 }) // mail's m; k waits behind orders
	time.Sleep(300 * time.Millisecond)
	if p := statusJSONOf(t, in).Pending; p != 2 {
		t.Fatalf("pending during the pause = %d, want 2 (orders' message and k's next)", p)
	}
	in.run(t, "resume", "topic", "orders").want(t, 0)
	waitFor(t, func() bool { return statusJSONOf(t, in).Pending == 0 })
	if st := statusJSONOf(t, in); st.Pauses == nil || len(st.Pauses) != 0 || st.PausesMissing {
		t.Fatalf("status --json after the resumes: pauses %+v, missing %v; want []", st.Pauses, st.PausesMissing)
	}
	in.run(t, "status").want(t, 0).contains(t, "nothing")
	cancel()
	out := (<-done).want(t, 0).stdout
	n1, n3 := strings.Index(out, `"payload":{"n":1}`), strings.Index(out, `"payload":{"n":3}`)
	if n1 < 0 || n3 < n1 || strings.Index(out, `"payload":{"n":2}`) > n1 {
		t.Fatalf("published out of order (want n 2, then 1, then 3):\n%s", out)
	}
}
