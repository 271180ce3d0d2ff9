package webhook_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/sinktest"
	"github.com/outboxgo/outbox/sink/webhook"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestConformance(t *testing.T) {
	t.Parallel()
	sinktest.Run(t, func(t *testing.T) *sinktest.Harness {
		srv := newServer(t, testSecret)
		badValue := sinktest.NewRecord("orders", "k", []byte("{}"))
		badValue.Headers = map[string]string{"X-Bad": "a\r\nInjected: yes"}
		badName := sinktest.NewRecord("orders", "k", []byte("{}"))
		badName.Headers = map[string]string{"bad name:": "x"}
		s := newSink(t, webhook.Config{
			URLs: map[string]string{
				"orders":        srv.URL + "/orders",
				"users.created": srv.URL + "/users.created",
				"rejected":      srv.URL + "/status/400?body=invalid+payload",
				"gone":          srv.URL + "/status/410",
				"moved":         srv.URL + "/status/301?location=https://elsewhere.example/hook",
			},
			Secrets: []string{testSecret},
			Source:  "sinktest",
		})
		return &sinktest.Harness{
			Sink:     s,
			Topics:   []string{"orders", "users.created"},
			Receiver: &receiver{s: srv},
			Source:   "sinktest",
			Permanent: []*outbox.Record{
				sinktest.NewRecord("rejected", "k", []byte("{}")),
				sinktest.NewRecord("gone", "k", []byte("{}")),
				sinktest.NewRecord("moved", "k", []byte("{}")),
				sinktest.NewRecord("unrouted", "k", []byte("{}")),
				badValue,
				badName,
			},
		}
	})
}

// TestEnvelope checks the exact request: method, body, CloudEvents headers (percent-encoded
// where the binding says so), content type, user and configured headers, signature.
func TestEnvelope(t *testing.T) {
	t.Parallel()
	srv := newServer(t, testSecret)
	s := newSink(t, webhook.Config{
		URL:     srv.URL + "/hook",
		Secrets: []string{testSecret},
		Source:  "svc test",
		Headers: map[string]string{"Authorization": "Bearer static-token-123", "X-Static": "s"},
	})
	r := sinktest.NewRecord("orders.created", "order 42/ü\"%", []byte(`{"total":12}`))
	r.Type = "com.example.order.created"
	r.Headers = map[string]string{
		"Content-Type":  "application/json",
		"traceparent":   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"X-Tenant":      "acme",
		"authorization": "Bearer from-the-message", // the configured header wins
	}
	// The sink's own headers (Webhook-Signature, Host, ...) cannot be set: such a message
	// fails permanently (TestConformance/ReservedHeaders).
	if err := publish(t, s, r)[0]; err != nil {
		t.Fatal(err)
	}
	reqs := srv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	req := reqs[0]
	if req.VerifyErr != nil {
		t.Errorf("signature: %v", req.VerifyErr)
	}
	want := map[string]string{
		"Ce-Id":          r.ID.String(),
		"Ce-Source":      "svc%20test",
		"Ce-Specversion": "1.0",
		"Ce-Type":        "com.example.order.created",
		"Ce-Subject":     "order%2042/%C3%BC%22%25",
		"Ce-Time":        r.CreatedAt.UTC().Format(time.RFC3339Nano),
		"Content-Type":   "application/json",
		"Ce-Outboxseq":   strconv.FormatInt(r.Seq, 10),
		"Traceparent":    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"X-Tenant":       "acme",
		"Authorization":  "Bearer static-token-123",
		"X-Static":       "s",
		"User-Agent":     webhook.UserAgent,
		"Webhook-Id":     r.ID.String(),
		"Outbox-Attempt": "1",
	}
	for name, v := range want {
		if got := req.Header.Values(name); len(got) != 1 || got[0] != v {
			t.Errorf("header %s = %q, want [%q]", name, got, v)
		}
	}
	if got := req.Header.Get(webhook.HeaderSignature); strings.Contains(got, "forged") || !strings.HasPrefix(got, "v1,") {
		t.Errorf("webhook-signature = %q", got)
	}
	allowed := map[string]bool{"Webhook-Timestamp": true, "Webhook-Signature": true, "Content-Length": true, "Accept-Encoding": true}
	for name := range req.Header {
		if _, ok := want[name]; !ok && !allowed[name] {
			t.Errorf("unexpected header %s: %q", name, req.Header.Values(name))
		}
	}
	if string(req.Body) != string(r.Payload) {
		t.Errorf("body %q, want %q", req.Body, r.Payload)
	}
	if subj, err := url.PathUnescape(req.Header.Get("Ce-Subject")); err != nil || subj != r.Key {
		t.Errorf("ce-subject decodes to %q (%v), want %q", subj, err, r.Key)
	}
}

// TestEnvelopeDefaults: no key, no type, no content type, no secret: no ce-subject, the
// topic as type, no Content-Type (the HTTP binding has none to give), no webhook- headers.
func TestEnvelopeDefaults(t *testing.T) {
	t.Parallel()
	srv := newServer(t, "")
	s := newSink(t, webhook.Config{URL: srv.URL + "/hook"})
	if err := publish(t, s, sinktest.NewRecord("audit", "", []byte{0, 1, 2}))[0]; err != nil {
		t.Fatal(err)
	}
	req := srv.requests()[0]
	if v := req.Header.Values("Ce-Subject"); v != nil {
		t.Errorf("ce-subject = %q, want none", v)
	}
	if v := req.Header.Get("Ce-Type"); v != "audit" {
		t.Errorf("ce-type = %q, want the topic", v)
	}
	if v := req.Header.Get("Ce-Source"); v != webhook.DefaultSource {
		t.Errorf("ce-source = %q, want %q", v, webhook.DefaultSource)
	}
	if v := req.Header.Values("Content-Type"); v != nil {
		t.Errorf("content-type = %q, want none", v)
	}
	for _, h := range []string{webhook.HeaderID, webhook.HeaderTimestamp, webhook.HeaderSignature} {
		if v := req.Header.Values(h); v != nil {
			t.Errorf("%s = %q without a secret", h, v)
		}
	}
}

// TestSignatureRoundTrip: requests signed with a whsec_ secret, a raw secret, or both during
// a rotation verify with each secret, and with the reference algorithm computed here.
func TestSignatureRoundTrip(t *testing.T) {
	t.Parallel()
	const raw = "a-raw-secret-of-at-least-24-bytes"
	for _, secrets := range [][]string{{testSecret}, {raw}, {raw, testSecret}} {
		t.Run(strings.Join(secrets, "+"), func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, "")
			s := newSink(t, webhook.Config{URL: srv.URL + "/hook", Secrets: secrets})
			r := sinktest.NewRecord("orders", "k", []byte(`{"n":1}`))
			if err := publish(t, s, r)[0]; err != nil {
				t.Fatal(err)
			}
			req := srv.requests()[0]
			sigs := strings.Fields(req.Header.Get(webhook.HeaderSignature))
			if len(sigs) != len(secrets) {
				t.Errorf("%d signatures for %d secrets: %q", len(sigs), len(secrets), sigs)
			}
			ts := req.Header.Get(webhook.HeaderTimestamp)
			for i, secret := range secrets {
				if err := webhook.Verify(secret, req.Header, req.Body, 0); err != nil {
					t.Errorf("Verify with secret %d: %v", i, err)
				}
				if want := referenceSignature(t, secret, r.ID.String(), ts, req.Body); sigs[i] != want {
					t.Errorf("signature %d = %q, reference algorithm gives %q", i, sigs[i], want)
				}
			}
			if err := webhook.Verify("whsec_"+"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", req.Header, req.Body, 0); !errors.Is(err, webhook.ErrInvalidSignature) {
				t.Errorf("Verify with another secret: %v, want ErrInvalidSignature", err)
			}
		})
	}
}

// TestResponses: the status code decides between success, retryable (counted), unavailable
// (the endpoint's as a whole) and permanent.
func TestResponses(t *testing.T) {
	t.Parallel()
	srv := newServer(t, "")
	tests := []struct {
		path        string
		permanent   bool
		unavailable bool
		ok          bool
		retryAfter  time.Duration // expected RetryAfterError delay; -1: none
		contains    string
	}{
		{path: "/status/200", ok: true},
		{path: "/status/202", ok: true},
		{path: "/status/204", ok: true},
		{path: "/status/400?body=field+%22total%22+is+required", permanent: true, retryAfter: -1, contains: `400 Bad Request: field "total" is required`},
		{path: "/status/401", unavailable: true, retryAfter: -1, contains: "401 Unauthorized"},
		{path: "/status/403", unavailable: true, retryAfter: -1, contains: "403 Forbidden"},
		{path: "/status/404", permanent: true, retryAfter: -1, contains: "404 Not Found"},
		{path: "/status/408", unavailable: true, retryAfter: -1, contains: "408 Request Timeout"},
		{path: "/status/413", permanent: true, retryAfter: -1, contains: "413"},
		{path: "/status/425", retryAfter: -1, contains: "425"},
		{path: "/status/429?retry_after=7", unavailable: true, retryAfter: 7 * time.Second, contains: "429 Too Many Requests"},
		{path: "/status/429", unavailable: true, retryAfter: -1, contains: "429"},
		{path: "/status/429?retry_after=soon", unavailable: true, retryAfter: -1, contains: "429"},
		{path: "/status/500?body=boom", retryAfter: -1, contains: "500 Internal Server Error: boom"},
		{path: "/status/501", retryAfter: -1, contains: "501"},
		{path: "/status/502", unavailable: true, retryAfter: -1, contains: "502"},
		{path: "/status/503?retry_after=120", unavailable: true, retryAfter: 2 * time.Minute, contains: "503"},
		{path: "/status/504", unavailable: true, retryAfter: -1, contains: "504"},
		{path: "/status/302?location=/other/path%3Ftoken%3Dsecret", permanent: true, retryAfter: -1, contains: "redirect to " + srv.URL + " not followed"},
		{path: "/status/308?location=https://new.example:8443/x/y", permanent: true, retryAfter: -1, contains: "redirect to https://new.example:8443 not followed"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			s := newSink(t, webhook.Config{URL: srv.URL + tc.path})
			err := publish(t, s, sinktest.NewRecord("orders", "k", []byte("{}")))[0]
			if tc.ok {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			if err == nil {
				t.Fatal("got success")
			}
			t.Logf("%v", err)
			if sink.IsPermanent(err) != tc.permanent {
				t.Errorf("permanent = %v, want %v", sink.IsPermanent(err), tc.permanent)
			}
			if sink.IsUnavailable(err) != tc.unavailable {
				t.Errorf("unavailable = %v, want %v", sink.IsUnavailable(err), tc.unavailable)
			}
			var se *webhook.StatusError
			if !errors.As(err, &se) {
				t.Errorf("%v is not a *StatusError", err)
			}
			var ra *webhook.RetryAfterError
			switch {
			case tc.retryAfter < 0 && errors.As(err, &ra):
				t.Errorf("unexpected RetryAfterError %v", ra)
			case tc.retryAfter >= 0 && !errors.As(err, &ra):
				t.Errorf("%v is not a *RetryAfterError", err)
			case tc.retryAfter >= 0 && ra.RetryAfter() != tc.retryAfter:
				t.Errorf("RetryAfter() = %s, want %s", ra.RetryAfter(), tc.retryAfter)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not contain %q", err, tc.contains)
			}
			if strings.Contains(err.Error(), "/status/") || strings.Contains(err.Error(), "token") {
				t.Errorf("error %q shows a URL path or query", err)
			}
		})
	}
}

// TestRetryAfterDate: Retry-After as an HTTP date.
func TestRetryAfterDate(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	s := newSink(t, webhook.Config{URL: srv.URL})
	err := publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]
	var ra *webhook.RetryAfterError
	if !errors.As(err, &ra) || sink.IsPermanent(err) {
		t.Fatalf("got %v, want a retryable *RetryAfterError", err)
	}
	if d := ra.RetryAfter(); d < 85*time.Second || d > 90*time.Second {
		t.Errorf("RetryAfter() = %s, want about 90s", d)
	}
}

// TestBodyExcerpt: an error quotes at most 256 bytes of the body, made printable.
func TestBodyExcerpt(t *testing.T) {
	t.Parallel()
	body := "line one\r\n\tline two\x00\x1b[31m" + strings.Repeat("é", 300) + "\xff"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	s := newSink(t, webhook.Config{URL: srv.URL})
	err := publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]
	var se *webhook.StatusError
	if !errors.As(err, &se) || !sink.IsPermanent(err) {
		t.Fatalf("got %v, want a permanent *StatusError", err)
	}
	if !strings.HasPrefix(se.Body, "line one line two [31mééé") || !strings.HasSuffix(se.Body, "é…") {
		t.Errorf("excerpt %q", se.Body)
	}
	if n := len(strings.TrimSuffix(se.Body, "…")); n > 256 {
		t.Errorf("excerpt of %d bytes", n)
	}
	for _, r := range se.Body {
		if r < 0x20 || r == 0x7f {
			t.Errorf("excerpt %q holds a control character", se.Body)
			break
		}
	}
}

// TestSecretsNotInErrors: neither the signing secrets, nor configured header values, nor the
// URL's path, query or credentials appear in errors, also when the endpoint echoes them.
func TestSecretsNotInErrors(t *testing.T) {
	t.Parallel()
	const rawSecret = "raw-signing-secret-0123456789abcdef"
	const token = "tok-4f1c9a7e2b"
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		// A careless endpoint that echoes everything back.
		fmt.Fprintf(w, "auth=%s secret=%s url=%s", r.Header.Get("Authorization"), rawSecret, r.URL)
	}))
	t.Cleanup(echo.Close)
	// A port nothing listens on, for a network error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	_ = ln.Close()

	secrets := []string{rawSecret, testSecret}
	headers := map[string]string{"Authorization": "Bearer " + token}
	leaks := []string{rawSecret, testSecret, strings.TrimPrefix(testSecret, "whsec_"), token, "hook-path-token", "query-token", "user:pass"}
	for _, u := range []string{
		echo.URL + "/services/hook-path-token?key=query-token",
		"http://user:pass@" + closed + "/services/hook-path-token?key=query-token",
	} {
		logs := &logtest.Buffer{}
		s := newSink(t, webhook.Config{URL: u, Secrets: secrets, Headers: headers, Timeout: 5 * time.Second, Logger: logs.Logger()})
		err := publish(t, s, sinktest.NewRecord("orders", "k", []byte("{}")))[0]
		if err == nil {
			t.Fatal("got success")
		}
		t.Logf("%v", err)
		for _, leak := range leaks {
			if strings.Contains(err.Error(), leak) || strings.Contains(logs.String(), leak) {
				t.Errorf("%q leaked: error %q, log %q", leak, err, logs.String())
			}
		}
	}
	// Config errors do not repeat a URL or a secret either.
	for _, cfg := range []webhook.Config{
		{URL: "ftp://user:pass@host/hook-path-token"},
		{URL: "http://host/hook-path-token", Secrets: []string{"whsec_not base64 query-token"}},
	} {
		_, err := webhook.New(context.Background(), cfg)
		if err == nil {
			t.Fatal("New accepted an invalid config")
		}
		for _, leak := range leaks {
			if strings.Contains(err.Error(), leak) || strings.Contains(err.Error(), "not base64") {
				t.Errorf("%q leaked in config error %q", leak, err)
			}
		}
	}
}

// TestNetworkErrorRetryable: no server at the URL is an Unavailable (retryable) error.
func TestNetworkErrorRetryable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	s := newSink(t, webhook.Config{URL: "http://" + addr + "/hook"})
	err = publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]
	if !sink.IsUnavailable(err) {
		t.Fatalf("got %v, want an Unavailable error", err)
	}
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("%v does not wrap the network error", err)
	}
}

// hangingServer answers nothing until the test ends or the client gives up.
func hangingServer(t *testing.T) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	done := make(chan struct{})
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(func() {
		close(done)
		srv.Close()
	})
	return srv, &hits
}

// TestTimeout: a request without a response within Config.Timeout fails as Unavailable.
func TestTimeout(t *testing.T) {
	t.Parallel()
	srv, _ := hangingServer(t)
	const timeout = 200 * time.Millisecond
	s := newSink(t, webhook.Config{URL: srv.URL, Timeout: timeout})
	start := time.Now()
	res := publish(t, s, sinktest.NewRecord("orders", "a", nil), sinktest.NewRecord("orders", "b", nil))
	if d := time.Since(start); d < timeout || d > timeout+2*time.Second {
		t.Errorf("Publish took %s with a request timeout of %s", d, timeout)
	}
	for i, err := range res {
		if !sink.IsUnavailable(err) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timeout of 200ms") {
			t.Errorf("message %d: %v, want an Unavailable timeout", i, err)
		}
	}
}

// TestCancel: canceling Publish while requests hang returns at once, every message failed
// as Unavailable with context.Canceled.
func TestCancel(t *testing.T) {
	t.Parallel()
	srv, hits := hangingServer(t)
	s := newSink(t, webhook.Config{URL: srv.URL, MaxConcurrency: 2})
	var recs []*outbox.Record
	for i := 0; i < 10; i++ {
		recs = append(recs, sinktest.NewRecord("orders", fmt.Sprint("k", i%3), nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once both concurrency slots hang.
		for hits.Load() < 2 {
			<-time.After(time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	res := s.Publish(ctx, recs)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Publish took %s after cancellation", d)
	}
	for i, err := range res {
		if !sink.IsUnavailable(err) || !errors.Is(err, context.Canceled) {
			t.Errorf("message %d: %v, want an Unavailable cancellation", i, err)
		}
	}
	if n := hits.Load(); n != 2 {
		t.Errorf("%d requests sent, want 2 (MaxConcurrency)", n)
	}
}

// TestSameKeySequencing: messages of one key are never in flight together and arrive in
// order; different keys overlap, within MaxConcurrency.
func TestSameKeySequencing(t *testing.T) {
	t.Parallel()
	const maxConc = 4
	var (
		mu        sync.Mutex
		inFlight  = map[string]int{}
		total     int
		maxTotal  int
		overlaps  []string
		perKeySeq = map[string][]string{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Ce-Subject")
		mu.Lock()
		inFlight[key]++
		total++
		maxTotal = max(maxTotal, total)
		if inFlight[key] > 1 {
			overlaps = append(overlaps, key)
		}
		perKeySeq[key] = append(perKeySeq[key], r.Header.Get("Ce-Id"))
		mu.Unlock()
		// Simulated endpoint latency, so that requests overlap.
		time.Sleep(2 * time.Millisecond)
		mu.Lock()
		inFlight[key]--
		total--
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	s := newSink(t, webhook.Config{URL: srv.URL, MaxConcurrency: maxConc})
	var recs []*outbox.Record
	for i := 0; i < 10; i++ {
		for k := 0; k < 8; k++ {
			recs = append(recs, sinktest.NewRecord("orders", fmt.Sprint("key-", k), nil))
		}
	}
	for i, err := range publish(t, s, recs...) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(overlaps) > 0 {
		t.Errorf("messages of one key in flight together: %v", overlaps)
	}
	if maxTotal > maxConc || maxTotal < 2 {
		t.Errorf("at most %d requests in flight, want 2..%d", maxTotal, maxConc)
	}
	for k := 0; k < 8; k++ {
		key := fmt.Sprint("key-", k)
		var want []string
		for _, r := range recs {
			if r.Key == key {
				want = append(want, r.ID.String())
			}
		}
		if got := perKeySeq[key]; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("key %s arrived as %v, want %v", key, got, want)
		}
	}
}

// TestFailureHoldsBackKey: after a retryable failure the rest of the key is not sent; a
// permanent failure does not hold anything back.
func TestFailureHoldsBackKey(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(body))
		mu.Unlock()
		switch string(body) {
		case "a1":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "b1":
			w.WriteHeader(http.StatusBadRequest)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	t.Cleanup(srv.Close)
	s := newSink(t, webhook.Config{URL: srv.URL, MaxConcurrency: 1})
	recs := []*outbox.Record{
		sinktest.NewRecord("orders", "a", []byte("a1")),
		sinktest.NewRecord("orders", "b", []byte("b1")),
		sinktest.NewRecord("orders", "a", []byte("a2")),
		sinktest.NewRecord("orders", "b", []byte("b2")),
	}
	res := publish(t, s, recs...)
	if res[0] == nil || sink.IsPermanent(res[0]) {
		t.Errorf("a1: %v, want retryable", res[0])
	}
	if res[2] == nil || sink.IsPermanent(res[2]) || !strings.Contains(res[2].Error(), "earlier message") {
		t.Errorf("a2: %v, want a retryable not-sent error", res[2])
	}
	if !sink.IsPermanent(res[1]) || res[3] != nil {
		t.Errorf("b1: %v (want permanent), b2: %v (want success)", res[1], res[3])
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(got, ",") != "a1,b1,b2" {
		t.Errorf("requests %v, want [a1 b1 b2]", got)
	}
}

// TestCustomClient: a custom client sends the requests, and redirects are still not
// followed.
func TestCustomClient(t *testing.T) {
	t.Parallel()
	var targetHits atomic.Int64
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		targetHits.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(target.Close)
	srv := newServer(t, "")
	var used atomic.Int64
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		used.Add(1)
		return tr.RoundTrip(r)
	})}
	s := newSink(t, webhook.Config{URL: srv.URL + "/status/307?location=" + url.QueryEscape(target.URL), Client: client})
	err := publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]
	if !sink.IsPermanent(err) {
		t.Errorf("redirect: %v, want permanent", err)
	}
	if used.Load() != 1 || targetHits.Load() != 0 {
		t.Errorf("custom transport used %d times, redirect target hit %d times; want 1 and 0", used.Load(), targetHits.Load())
	}
	if client.CheckRedirect != nil {
		t.Error("New modified the caller's client")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestClose: Close is idempotent and Publish afterwards fails retryably with ErrClosed.
func TestClose(t *testing.T) {
	t.Parallel()
	srv := newServer(t, "")
	s := newSink(t, webhook.Config{URL: srv.URL})
	if err := publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	res := publish(t, s, sinktest.NewRecord("orders", "k", nil))
	if !errors.Is(res[0], webhook.ErrClosed) || !sink.IsUnavailable(res[0]) {
		t.Errorf("Publish after Close: %v, want an Unavailable ErrClosed", res[0])
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   webhook.Config
		field string
	}{
		{"no url", webhook.Config{}, "url"},
		{"bad url", webhook.Config{URL: "http://[::1"}, "url"},
		{"relative url", webhook.Config{URL: "/hook"}, "url"},
		{"ftp url", webhook.Config{URL: "ftp://host/x"}, "url"},
		{"url with fragment", webhook.Config{URL: "http://host/x#frag"}, "url"},
		{"bad topic url", webhook.Config{URLs: map[string]string{"orders": "host:80"}}, "urls"},
		{"empty topic", webhook.Config{URLs: map[string]string{"": "http://host"}}, "urls"},
		{"empty secret", webhook.Config{URL: "http://host", Secrets: []string{""}}, "secrets"},
		{"bad whsec", webhook.Config{URL: "http://host", Secrets: []string{"whsec_!!!"}}, "secrets"},
		{"empty whsec", webhook.Config{URL: "http://host", Secrets: []string{"whsec_"}}, "secrets"},
		{"bad header name", webhook.Config{URL: "http://host", Headers: map[string]string{"X Bad": "v"}}, "headers"},
		{"bad header value", webhook.Config{URL: "http://host", Headers: map[string]string{"X-Bad": "a\nb"}}, "headers"},
		{"reserved header", webhook.Config{URL: "http://host", Headers: map[string]string{"Content-Type": "text/plain"}}, "headers"},
		{"ce header", webhook.Config{URL: "http://host", Headers: map[string]string{"ce-id": "x"}}, "headers"},
		{"signature header", webhook.Config{URL: "http://host", Headers: map[string]string{"webhook-signature": "x"}}, "headers"},
		{"negative timeout", webhook.Config{URL: "http://host", Timeout: -1}, "timeout"},
		{"negative concurrency", webhook.Config{URL: "http://host", MaxConcurrency: -1}, "max_concurrency"},
		{"control char in source", webhook.Config{URL: "http://host", Source: "svc\n"}, "source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var vce *outbox.ConfigError
			if err := tc.cfg.Validate(); !errors.As(err, &vce) || vce.Field != tc.field {
				t.Errorf("Validate: %v, want a ConfigError for field %q", err, tc.field)
			}
			s, err := webhook.New(context.Background(), tc.cfg)
			if err == nil {
				_ = s.Close()
				t.Fatal("New accepted an invalid config")
			}
			var ce *outbox.ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field || !errors.Is(err, outbox.ErrInvalidConfig) {
				t.Errorf("error %v, want a ConfigError for field %q wrapping ErrInvalidConfig", err, tc.field)
			}
		})
	}
}

// Outbox-Attempt says 1 on a message's first send, and at least 2 once it was sent without
// a settling answer or the relay counted a failure.
func TestAttemptHeader(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen = map[string][]string{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Ce-Id")
		mu.Lock()
		seen[id] = append(seen[id], r.Header.Get(webhook.HeaderAttempt))
		n := len(seen[id])
		mu.Unlock()
		if r.URL.Path == "/flaky" && n == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	attempts := func(r *outbox.Record) []string {
		mu.Lock()
		defer mu.Unlock()
		return seen[r.ID.String()]
	}
	ok := newSink(t, webhook.Config{URL: srv.URL + "/ok"})
	a := sinktest.NewRecord("orders", "k", []byte("{}"))
	for range 2 {
		if err := publish(t, ok, a)[0]; err != nil {
			t.Fatal(err)
		}
	}
	if got := attempts(a); !slices.Equal(got, []string{"1", "1"}) {
		t.Errorf("acknowledged, sent again (a relay retrying the batch) = %v, want [1 1]", got)
	}
	flaky := newSink(t, webhook.Config{URL: srv.URL + "/flaky"})
	b := sinktest.NewRecord("orders", "k", []byte("{}"))
	if err := publish(t, flaky, b)[0]; err == nil {
		t.Fatal("want the 503")
	}
	if err := publish(t, flaky, b)[0]; err != nil {
		t.Fatal(err)
	}
	if got := attempts(b); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("503 then 204 = %v, want [1 2]", got)
	}
	c := sinktest.NewRecord("orders", "k", []byte("{}"))
	c.Attempts = 3
	if err := publish(t, ok, c)[0]; err != nil {
		t.Fatal(err)
	}
	if got := attempts(c); !slices.Equal(got, []string{"4"}) {
		t.Errorf("after 3 counted failures = %v, want [4]", got)
	}
	// A user header of that name would be overwritten: refused instead.
	d := sinktest.NewRecord("orders", "k", []byte("{}"))
	d.Headers = map[string]string{"outbox-attempt": "1"}
	if err := publish(t, ok, d)[0]; !sink.IsPermanent(err) {
		t.Errorf("a message with an Outbox-Attempt header: %v, want a permanent error", err)
	}
}
