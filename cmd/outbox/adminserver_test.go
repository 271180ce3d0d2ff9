package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// freeAddr returns a loopback address nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRelayAdminServer: with --admin-addr the relay serves health, readiness, metrics that
// count what it published, and the status API behind the read token; the tokens never
// reach its log.
func TestRelayAdminServer(t *testing.T) {
	t.Parallel()
	in := postgresEnv(t)
	in.run(t, "migrate", "up").want(t, 0)
	for range 3 {
		in.run(t, "enqueue", "--topic", "orders.created", "--key", "o-1", "--data", `{}`).want(t, 0)
	}
	const tok, readTok = "admin-secret-0123456789", "reader-secret-0123456789"
	in.env["OUTBOX_ADMIN_TOKEN"] = tok
	in.env["OUTBOX_ADMIN_READ_TOKEN"] = readTok
	addr := freeAddr(t)
	base := "http://" + addr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		done <- in.runCtx(t, ctx, "relay", "--sink-type", "stdout", "--admin-addr", addr, "--admin-stats-interval", "100ms",
			"--admin-max-lag", "1m", "--relay-pause-interval", "50ms")
	}()
	waitFor(t, func() bool {
		code, body := get(t, base+"/metrics", readTok)
		return code == 200 && strings.Contains(body, `outbox_relay_published_total{sink="stdout"} 3`)
	})
	if code, body := get(t, base+"/healthz", ""); code != 200 {
		t.Errorf("healthz: %d %s", code, body)
	}
	waitFor(t, func() bool { code, _ := get(t, base+"/readyz", ""); return code == 200 })
	if code, _ := get(t, base+"/metrics", ""); code != 401 {
		t.Errorf("metrics without the read token: %d, want 401", code)
	}
	// The figures are read every 100ms: the backlog shows empty soon after.
	waitFor(t, func() bool {
		code, body := get(t, base+"/api/v1/status", readTok)
		return code == 200 && strings.Contains(body, `"backlog": 0`) && strings.Contains(body, `"connected": true`)
	})
	if code, body := get(t, base+"/api/v1/history", readTok); code != 200 || !strings.Contains(body, `"samples": [`) {
		t.Errorf("history: %d %s", code, body)
	}
	_, m := get(t, base+"/metrics", tok)
	for _, want := range []string{"outbox_relay_claims_total{result=\"messages\",source=\"poll\"}", "outbox_source_connected{source=\"poll\"} 1",
		"outbox_relay_delivery_latency_seconds_count{sink=\"stdout\"} 3", "outbox_build_info{", "go_goroutines", "outbox_backlog_messages{table="} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// A pause through the daemon's API is kept in the database (the CLI lists it), read by the
	// relay (its metric), holds the topic without failing /readyz, and its removal resumes it.
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, base+"/api/v1/pauses",
		strings.NewReader(`{"kind":"topic","name":"orders.paused","reason":"test"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /api/v1/pauses: %v %v", resp, err)
	}
	_ = resp.Body.Close()
	cli := invocation{env: map[string]string{}} // the database only: admin settings need admin.addr
	for _, k := range []string{"OUTBOX_DATABASE_URL", "OUTBOX_TABLE"} {
		cli.env[k] = in.env[k]
	}
	cli.run(t, "pause", "list").want(t, 0).contains(t, "orders.paused", "test")
	waitFor(t, func() bool {
		_, m := get(t, base+"/metrics", readTok)
		return strings.Contains(m, `outbox_relay_operator_pauses{kind="topic"} 1`)
	})
	cli.run(t, "enqueue", "--topic", "orders.paused", "--key", "p-1", "--data", `{}`).want(t, 0)
	time.Sleep(500 * time.Millisecond)
	if s := statusJSONOf(t, cli); s.Pending != 1 {
		t.Fatalf("pending during the pause = %d, want 1", s.Pending)
	}
	if code, body := get(t, base+"/readyz", ""); code != 200 {
		t.Errorf("readyz during an operator pause: %d %s", code, body)
	}
	req, _ = http.NewRequestWithContext(context.Background(), http.MethodDelete, base+"/api/v1/pauses/topic/orders.paused", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE /api/v1/pauses/topic/orders.paused: %v %v", resp, err)
	}
	_ = resp.Body.Close()
	waitFor(t, func() bool { return statusJSONOf(t, cli).Pending == 0 })
	cancel()
	r := (<-done).want(t, 0).contains(t, "admin server listening", "admin: mutation", "action=pause", "action=resume")
	if strings.Contains(r.stderr, tok) || strings.Contains(r.stderr, readTok) {
		t.Fatalf("a token reached the log:\n%s", r.stderr)
	}
}

// A taken admin address, a short token or a lone TLS file stops the relay at start, naming
// the setting.
func TestRelayAdminServerConfig(t *testing.T) {
	t.Parallel()
	in := sqliteEnv(t)
	in.run(t, "migrate", "up").want(t, 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	in.run(t, "relay", "--sink-type", "stdout", "--admin-addr", ln.Addr().String()).want(t, 2).contains(t, "admin.addr")
	in.run(t, "relay", "--sink-type", "stdout", "--admin-addr", "127.0.0.1:0", "--admin-token", "short").want(t, 2).contains(t, "admin.token")
	in.run(t, "relay", "--sink-type", "stdout", "--admin-addr", "127.0.0.1:0", "--admin-tls-cert", "c.pem").want(t, 2).contains(t, "admin.tls_key")
	in.run(t, "relay", "--sink-type", "stdout", "--admin-token", "0123456789abcdefgh").want(t, 2).contains(t, "admin.addr")
}
