package webhook_test

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/sinktest"
	"github.com/outboxgo/outbox/sink/webhook"
)

// TestEndpointCut: with the connection to the endpoint cut (refused and reset), every
// Publish returns Unavailable errors within the timeout, never success, and publishing
// resumes once the endpoint is reachable again.
func TestEndpointCut(t *testing.T) {
	t.Parallel()
	srv := newServer(t, "")
	proxy := faultproxy.Start(t, srv.Listener.Addr().String())
	const timeout = time.Second
	s := newSink(t, webhook.Config{URL: "http://" + proxy.Addr() + "/hook", Timeout: timeout})
	sinktest.Reconnect(t, sinktest.Outage{Sink: s, Timeout: timeout, Cut: proxy.Cut, Restore: proxy.Restore,
		Before: 20, Rounds: 3, Down: 20, RecoverWithin: 20 * time.Second})
}

// TestCredentialsRefused: an endpoint answering 401 (the token in Config.Headers was
// rotated on its side) fails every message with an Unavailable error, not a permanent one,
// so none is dead-lettered; once the endpoint accepts the token again, publishing resumes.
// A 400 from the same endpoint stays the message's: permanent.
func TestCredentialsRefused(t *testing.T) {
	t.Parallel()
	var accepted atomic.Value
	accepted.Store("Bearer old")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != accepted.Load().(string):
			w.WriteHeader(http.StatusUnauthorized)
		case r.Header.Get("ce-subject") == "bad":
			w.WriteHeader(http.StatusBadRequest)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(srv.Close)
	s := newSink(t, webhook.Config{URL: srv.URL, Headers: map[string]string{"Authorization": "Bearer old"}})
	if err := publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]; err != nil {
		t.Fatalf("before: %v", err)
	}
	if err := publish(t, s, sinktest.NewRecord("orders", "bad", nil))[0]; !sink.IsPermanent(err) {
		t.Errorf("a 400: %v, want permanent", err)
	}
	accepted.Store("Bearer new")
	for i, err := range publish(t, s, sinktest.NewRecord("orders", "a", nil), sinktest.NewRecord("orders", "b", nil)) {
		if !sink.IsUnavailable(err) {
			t.Errorf("message %d with refused credentials: %v, want Unavailable", i, err)
		}
	}
	accepted.Store("Bearer old")
	if err := publish(t, s, sinktest.NewRecord("orders", "k", nil))[0]; err != nil {
		t.Errorf("after the endpoint accepts the token again: %v", err)
	}
}
