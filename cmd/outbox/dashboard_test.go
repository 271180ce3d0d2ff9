package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestRelayDashboard: `outbox relay --admin-addr` serves the embedded dashboard at /, as
// HTML with the strict Content-Security-Policy, and its script; no token is needed for the
// page itself (its API calls send one).
func TestRelayDashboard(t *testing.T) {
	t.Parallel()
	in := postgresEnv(t)
	in.run(t, "migrate", "up").want(t, 0)
	in.env["OUTBOX_ADMIN_TOKEN"] = "admin-secret-0123456789"
	in.env["OUTBOX_ADMIN_READ_TOKEN"] = "reader-secret-0123456789"
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- in.runCtx(t, ctx, "relay", "--sink-type", "stdout", "--admin-addr", addr) }()
	var (
		resp *http.Response
		body string
	)
	waitFor(t, func() bool {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+addr+"/", nil)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		resp, body = r, string(b)
		return true
	})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("GET / = %d %q, want 200 text/html", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe") {
		t.Errorf("GET /: Content-Security-Policy %q", csp)
	}
	if !strings.Contains(body, `<script type="module" src="ui/dashboard.js">`) {
		t.Errorf("GET / does not load the dashboard's script:\n%s", body)
	}
	if code, js := get(t, "http://"+addr+"/ui/dashboard.js", ""); code != http.StatusOK || !strings.Contains(js, "api/v1/status") {
		t.Errorf("GET /ui/dashboard.js = %d (%d bytes)", code, len(js))
	}
	cancel()
	(<-done).want(t, 0)
}
