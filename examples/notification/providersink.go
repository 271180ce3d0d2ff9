package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
)

// ProviderSink sends notifications to an SMS or voice provider's HTTP API, one request per
// message with the outbox message id as its Idempotency-Key, so a message the relay sends
// again (after a crash, or a lost response) is deduped by the provider.
//
// It maps the provider's answers to the sink contract:
//   - 2xx: delivered; 2xx with "Idempotent-Replayed: true" is a duplicate the provider
//     already held (sink.Duplicate, a success);
//   - no answer (connection refused or reset, timeout), 503, 401 and 403: the provider as a
//     whole is unavailable (sink.Unavailable): the relay pauses the channel and probes it,
//     spending no attempt of the messages;
//   - 408, 425, 429 (honouring Retry-After), 500, 502 and 504: retryable, with backoff;
//   - any other 4xx (an invalid phone number, a body the provider refuses): permanent, the
//     message goes to the dead letters with the provider's answer.
type ProviderSink struct {
	url    string
	client *http.Client
}

// NewProviderSink returns a sink posting to baseURL + "/v1/messages".
func NewProviderSink(baseURL string) *ProviderSink {
	return &ProviderSink{url: baseURL + "/v1/messages", client: &http.Client{Timeout: 10 * time.Second}}
}

// Publish sends msgs one by one, in order; once the provider is unavailable the rest of the
// batch fails with the same error without being tried.
func (s *ProviderSink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	res := make([]error, len(msgs))
	for i, m := range msgs {
		res[i] = s.send(ctx, m)
		if sink.IsUnavailable(res[i]) || ctx.Err() != nil {
			for j := i + 1; j < len(msgs); j++ {
				res[j] = res[i]
			}
			break
		}
	}
	return res
}

// Close releases idle connections.
func (s *ProviderSink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

func (s *ProviderSink) send(ctx context.Context, m *outbox.Record) error {
	var n Notification
	if err := json.Unmarshal(m.Payload, &n); err != nil {
		return sink.Permanentf("notification %s: %w", m.ID, err)
	}
	body, err := json.Marshal(providerRequest{To: n.Address, Body: n.Text(), Reference: Ref(n.Order, n.Version)})
	if err != nil {
		return sink.Permanent(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return sink.Permanent(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", m.ID.String())
	resp, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return sink.Unavailablef("provider: %w", err)
	}
	defer resp.Body.Close()
	detail, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return providerResult(resp, bytes.TrimSpace(detail))
}

// providerResult maps a provider's answer to the sink contract (see ProviderSink).
func providerResult(resp *http.Response, detail []byte) error {
	code := resp.StatusCode
	err := fmt.Errorf("provider answered %d %s", code, detail)
	switch {
	case code >= 200 && code < 300:
		if resp.Header.Get("Idempotent-Replayed") == "true" {
			return sink.Duplicate("the provider already had this Idempotency-Key")
		}
		return nil
	case code == http.StatusServiceUnavailable, code == http.StatusUnauthorized, code == http.StatusForbidden:
		return sink.Unavailable(err)
	case code == http.StatusTooManyRequests:
		return &retryAfterError{err: err, after: parseRetryAfter(resp.Header.Get("Retry-After"))}
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code >= 500:
		return err
	default:
		return sink.Permanent(err)
	}
}

// retryAfterError is a retryable error carrying the provider's Retry-After (sink.RetryAfter).
type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string             { return e.err.Error() }
func (e *retryAfterError) Unwrap() error             { return e.err }
func (e *retryAfterError) RetryAfter() time.Duration { return e.after }

var _ sink.RetryAfter = (*retryAfterError)(nil)

func parseRetryAfter(v string) time.Duration {
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return time.Second
}
