package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func post(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRelayAdminInspect: the relay's admin server lists itself among the relays (self, its
// partition), the topics and the configured inboxes, and replays the messages it published
// and retained, which it then publishes again.
func TestRelayAdminInspect(t *testing.T) {
	t.Parallel()
	in := postgresEnv(t)
	table := strings.TrimSuffix(in.env["OUTBOX_TABLE"], ".outbox") + ".billing_inbox"
	in.run(t, "migrate", "up").want(t, 0)
	in.run(t, "migrate", "up", "--inbox", table).want(t, 0)
	in.run(t, "enqueue", "--topic", "orders.created", "--key", "o-1", "--data", `{"n":1}`).want(t, 0)
	const tok = "admin-secret-0123456789"
	file := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(file, []byte("admin:\n  inboxes:\n    - {table: "+table+", consumer: billing}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	in.env["OUTBOX_CONFIG"] = file
	in.env["OUTBOX_ADMIN_TOKEN"] = tok
	in.env["OUTBOX_RETENTION"] = "1h"
	in.env["OUTBOX_RELAY_ID"] = "relay-under-test"
	addr := freeAddr(t)
	in.env["OUTBOX_ADMIN_ADDR"] = addr
	base := "http://" + addr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		done <- in.runCtx(t, ctx, "relay", "--sink-type", "stdout", "--admin-stats-interval", "100ms")
	}()
	waitFor(t, func() bool {
		code, body := get(t, base+"/api/v1/relays", "")
		return code == 200 && regexp.MustCompile(`"id": "relay-under-test",\s+"group": "",\s+"heartbeat_age_seconds": [0-9.e-]+,\s+"partition": 0,\s+"partitions": 1,\s+"self": true`).MatchString(body) &&
			strings.Contains(body, `"kind": "poll"`) && strings.Contains(body, `"ttl_seconds": 10`)
	})
	if code, body := get(t, base+"/api/v1/inboxes", ""); code != 200 || !strings.Contains(body, `"consumer": "billing"`) || !strings.Contains(body, `"processed": 0`) {
		t.Fatalf("inboxes: %d %s", code, body)
	}
	waitFor(t, func() bool {
		code, body := get(t, base+"/api/v1/topics", "")
		return code == 200 && strings.Contains(body, `"topics": []`)
	})
	window := `{"from":"` + time.Now().Add(-time.Hour).UTC().Format(time.RFC3339) + `","to":"` + time.Now().Add(time.Hour).UTC().Format(time.RFC3339) + `"`
	if code, body := post(t, base+"/api/v1/replay", tok, window+`,"dry_run":true}`); code != 200 || !strings.Contains(body, `"matched": 1`) {
		t.Fatalf("dry run: %d %s", code, body)
	}
	if code, body := post(t, base+"/api/v1/replay", tok, window+`}`); code != 200 || !strings.Contains(body, `"replayed": 1`) {
		t.Fatalf("replay: %d %s", code, body)
	}
	// Published again: then retained again, once.
	waitFor(t, func() bool {
		code, body := post(t, base+"/api/v1/replay", tok, window+`,"dry_run":true}`)
		return code == 200 && strings.Contains(body, `"matched": 1`) && statusJSONOf(t, in).Pending == 0
	})
	cancel()
	r := (<-done).want(t, 0)
	if n := strings.Count(r.stdout, `"n":1`); n != 2 {
		t.Fatalf("the message was published %d times, want twice (once replayed):\n%s", n, r.stdout)
	}
}
