package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/sinktest"
	"github.com/outboxgo/outbox/sink/webhook"
)

// request is what the test server saw of one request.
type request struct {
	Path   string
	Header http.Header
	Body   []byte
	// VerifyErr is the result of webhook.Verify with the server's secret (nil when the
	// server has none).
	VerifyErr error
}

// server is an httptest server that records requests. Paths:
//
//	/status/NNN      answers NNN without recording (a Retry-After query parameter is
//	                 copied to the header, a body parameter is the body)
//	anything else    records the request and answers 204
type server struct {
	*httptest.Server
	secret string

	mu     sync.Mutex
	reqs   []request
	notify chan struct{}
}

func newServer(t testing.TB, secret string) *server {
	t.Helper()
	s := &server{secret: secret, notify: make(chan struct{}, 1)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.Close)
	return s
}

func (s *server) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if code, ok := strings.CutPrefix(r.URL.Path, "/status/"); ok {
		n, _ := strconv.Atoi(code)
		if ra := r.URL.Query().Get("retry_after"); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		if loc := r.URL.Query().Get("location"); loc != "" {
			w.Header().Set("Location", loc)
		}
		w.WriteHeader(n)
		_, _ = io.WriteString(w, r.URL.Query().Get("body"))
		return
	}
	req := request{Path: r.URL.Path, Header: r.Header.Clone(), Body: body}
	if s.secret != "" {
		req.VerifyErr = webhook.Verify(s.secret, r.Header, body, 0)
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
	select {
	case s.notify <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}

// requests returns a copy of what was recorded so far.
func (s *server) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

// receiver hands the server's requests to sinktest, decoded from the CloudEvents HTTP
// binding; the topic is the path without its leading slash.
type receiver struct {
	s    *server
	next int
}

func (r *receiver) Receive(ctx context.Context) (sinktest.Received, error) {
	for {
		r.s.mu.Lock()
		if r.next < len(r.s.reqs) {
			req := r.s.reqs[r.next]
			r.next++
			r.s.mu.Unlock()
			if req.VerifyErr != nil {
				return sinktest.Received{}, fmt.Errorf("request to %s: signature check failed: %w", req.Path, req.VerifyErr)
			}
			return decode(req)
		}
		r.s.mu.Unlock()
		select {
		case <-r.s.notify:
		case <-ctx.Done():
			return sinktest.Received{}, ctx.Err()
		}
	}
}

// decode maps a request to a sinktest.Received with the CloudEvents Go SDK's HTTP binding
// (protocol/http), not with the sink's code, then percent-decodes the attributes as HTTP
// binding 3.1.3.2 says (the SDK skips that step). Every header but the ce- ones goes to
// Headers (sinktest compares names ignoring case).
func decode(req request) (sinktest.Received, error) {
	msg := cehttp.NewMessage(req.Header, io.NopCloser(bytes.NewReader(req.Body)))
	if msg.ReadEncoding() != binding.EncodingBinary {
		return sinktest.Received{}, fmt.Errorf("request to %s is not a binary-mode CloudEvent: headers %v", req.Path, req.Header)
	}
	ev, err := binding.ToEvent(context.Background(), msg)
	if err != nil {
		return sinktest.Received{}, fmt.Errorf("CloudEvents HTTP binding cannot read the request to %s: %w", req.Path, err)
	}
	for name := range ev.Extensions() {
		if name != sink.SeqAttribute {
			return sinktest.Received{}, fmt.Errorf("request to %s: unexpected CloudEvents extensions %v", req.Path, ev.Extensions())
		}
	}
	rec, err := sinktest.FromEvent(strings.TrimPrefix(req.Path, "/"), ev)
	if err != nil {
		return rec, err
	}
	if err := rec.DecodePercent(); err != nil {
		return rec, err
	}
	for name, vs := range req.Header {
		if len(vs) != 1 {
			return rec, fmt.Errorf("header %s has %d values", name, len(vs))
		}
		if !strings.HasPrefix(strings.ToLower(name), "ce-") {
			rec.Headers[name] = vs[0]
		}
	}
	return rec, nil
}

func newSink(t testing.TB, cfg webhook.Config) *webhook.Sink {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = logtest.New(t)
	}
	s, err := webhook.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func publish(t testing.TB, s *webhook.Sink, recs ...*outbox.Record) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := s.Publish(ctx, recs)
	if len(res) != len(recs) {
		t.Fatalf("Publish returned %d results for %d messages", len(res), len(recs))
	}
	return res
}
