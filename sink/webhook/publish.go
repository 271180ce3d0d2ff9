package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/ascii"
	"github.com/outboxgo/outbox/sink"
)

var _ sink.RetryAfter = (*RetryAfterError)(nil) // the relay honours its delay

// Publish posts every message to its endpoint and returns one result per message: nil once
// the endpoint answered 2xx. Messages of different keys (and unkeyed ones) are sent
// concurrently, up to Config.MaxConcurrency requests at once across the sink; messages of
// one key are sent one after the other in slice order, and after a retryable failure the
// rest of that key is not sent in this call, so a later message never overtakes an earlier
// one.
func (s *Sink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	res := make([]error, len(msgs))
	if len(msgs) == 0 {
		return res
	}
	defer markUnavailable(res)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.isClosed {
		for i := range res {
			res[i] = ErrClosed
		}
		return res
	}
	if err := ctx.Err(); err != nil {
		err = fmt.Errorf("webhook sink: not sent: %w", err)
		for i := range res {
			res[i] = err
		}
		return res
	}

	heads, next := lanes(msgs)
	workers := min(len(heads), cap(s.sem))
	var lane atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			w := &worker{sign: newSigner(s.keys)}
			for {
				l := int(lane.Add(1) - 1)
				if l >= len(heads) {
					return
				}
				s.runLane(ctx, w, msgs, heads[l], next, res)
			}
		})
	}
	wg.Wait()
	return res
}

// lanes links the messages of each key in slice order: heads are the first message of every
// key (and every unkeyed message), next[i] the following message of i's key or -1.
func lanes(msgs []*outbox.Record) (heads []int32, next []int32) {
	next = make([]int32, len(msgs))
	last := make(map[string]int32, len(msgs))
	for i, r := range msgs {
		next[i] = -1
		if r.Key != "" {
			if prev, ok := last[r.Key]; ok {
				next[prev] = int32(i)
				last[r.Key] = int32(i)
				continue
			}
			last[r.Key] = int32(i)
		}
		heads = append(heads, int32(i))
	}
	return heads, next
}

// worker holds one goroutine's reusable state.
type worker struct {
	sign *signer // nil when requests are not signed
	buf  [maxExcerpt + 1]byte
}

// runLane sends the messages of one key in order.
func (s *Sink) runLane(ctx context.Context, w *worker, msgs []*outbox.Record, head int32, next []int32, res []error) {
	var held error // a retryable failure: the rest of the key waits for the relay's retry
	for i := head; i >= 0; i = next[i] {
		r := msgs[i]
		if err := ctx.Err(); err != nil {
			res[i] = fmt.Errorf("webhook sink: not sent: %w", err)
			continue
		}
		if held != nil {
			res[i] = fmt.Errorf("webhook sink: not sent: an earlier message of key %q failed: %w", r.Key, held)
			continue
		}
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			res[i] = fmt.Errorf("webhook sink: not sent: %w", ctx.Err())
			continue
		}
		err := s.send(ctx, w, r)
		<-s.sem
		res[i] = err
		if err != nil && !sink.IsPermanent(err) && r.Key != "" {
			held = err
		}
	}
}

// maxDrain is how much of a response body is read to let the connection be reused; a longer
// body is abandoned with its connection.
const maxDrain = 64 << 10

// send posts one message and classifies the outcome.
func (s *Sink) send(ctx context.Context, w *worker, r *outbox.Record) error {
	ep := s.endpointFor(r.Topic)
	if ep == nil {
		return sink.Permanentf("webhook sink: no URL configured for topic %q (set url or urls)", r.Topic)
	}
	if err := sink.CheckHeaders(r); err != nil {
		return fmt.Errorf("webhook sink: topic %q: %w", r.Topic, err)
	}
	for name, v := range r.Headers {
		if !validHeaderValue(v) {
			return sink.Permanentf("webhook sink: topic %q: header %q: value contains a control character", r.Topic, name)
		}
		if ascii.EqualFold(name, HeaderAttempt) {
			return sink.Permanentf("webhook sink: topic %q: header %q is the sink's own", r.Topic, name)
		}
	}
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, ep.url, bytes.NewReader(r.Payload))
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // without the URL
		}
		return sink.Permanentf("webhook sink: POST to %s (topic %q): %v", ep.origin, r.Topic, err)
	}
	s.header(req.Header, w, r)
	attempt := r.Attempts + 1
	if s.unsettled.sent(r.ID) {
		attempt = max(attempt, 2)
	}
	req.Header[HeaderAttempt] = []string{strconv.Itoa(attempt)}
	resp, err := s.client.Do(req)
	if err != nil {
		return s.transportError(ctx, rctx, ep, r.Topic, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		s.unsettled.settle(r.ID)
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		return nil
	}
	// Read a little more than the excerpt, to know whether it was cut.
	n, _ := io.ReadFull(resp.Body, w.buf[:])
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	serr := &StatusError{
		StatusCode: resp.StatusCode,
		Endpoint:   ep.origin,
		Topic:      r.Topic,
		Body:       excerpt(w.buf[:min(n, maxExcerpt)], n > maxExcerpt, s.redact),
	}
	code := resp.StatusCode
	switch {
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		// The endpoint refuses the sink's credentials (Config.Headers, the signature): an
		// operator fixes them, and no message is at fault. Publish marks it unavailable.
		s.log.Error("webhook sink: the endpoint refused the request's credentials; publishing pauses until it accepts them",
			"endpoint", ep.origin, "topic", r.Topic, "status", code)
		return serr
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests, code >= 500 && code < 600:
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			return &RetryAfterError{Delay: d, Err: serr}
		}
		return serr
	case code >= 300 && code < 400:
		s.unsettled.settle(r.ID)
		if loc := resp.Header.Get("Location"); loc != "" {
			if u, err := req.URL.Parse(loc); err == nil && u.Host != "" {
				serr.Location = u.Scheme + "://" + u.Host
			}
		}
		return sink.Permanent(serr)
	case code >= 400 && code < 500:
		s.unsettled.settle(r.ID)
		return sink.Permanent(serr)
	default:
		return serr // an unexpected status: retrying is the safe choice
	}
}

// transportError classifies a request that got no response. Everything is retryable. The
// error of net/http names the full URL, which may hold a token: only its cause is kept.
func (s *Sink) transportError(parent, rctx context.Context, ep *endpoint, topic string, err error) error {
	var uerr *url.Error
	if errors.As(err, &uerr) {
		err = uerr.Err
	}
	switch {
	case parent.Err() != nil:
		return fmt.Errorf("webhook sink: POST to %s (topic %q): %w", ep.origin, topic, parent.Err())
	case rctx.Err() != nil:
		return fmt.Errorf("webhook sink: POST to %s (topic %q): no response within the timeout of %s: %w", ep.origin, topic, s.timeout, context.DeadlineExceeded)
	default:
		return fmt.Errorf("webhook sink: POST to %s (topic %q): %w", ep.origin, topic, err)
	}
}

// header fills h with the request headers of r: the user's headers, the configured ones,
// the CloudEvents attributes as ce- headers (values percent-encoded, HTTP binding 3.1.3.2),
// Content-Type when the message has a content-type, and the signature. Later ones win.
// One slice backs all the single-value slices. It is not reused for the next request: a
// custom transport may hold on to a request's headers.
func (s *Sink) header(h http.Header, w *worker, r *outbox.Record) {
	attrs := sink.Attributes(r, s.source)
	vals := make([]string, 0, len(r.Headers)+len(s.static)+len(attrs)+5)
	set := func(name, value string) {
		vals = append(vals, value)
		k := len(vals)
		h[name] = vals[k-1 : k : k]
	}
	for name, v := range r.Headers {
		if ascii.EqualFold(name, "content-type") {
			continue // datacontenttype, below; CheckHeaders refused the sink's own names
		}
		set(http.CanonicalHeaderKey(name), v)
	}
	for _, sh := range s.static {
		set(sh.name, sh.value)
	}
	if !s.hasUA {
		set("User-Agent", UserAgent)
	}
	var id string
	for _, a := range attrs {
		switch a.Name {
		case "datacontenttype":
			// HTTP binding 3.1.1: datacontenttype is the Content-Type; without one the
			// request has none (the binding forbids inventing it).
			set("Content-Type", a.Value)
		case "id":
			id = a.Value
			set("Ce-Id", a.Value)
		default:
			set(ceHeader(a.Name), sink.PercentEncode(a.Value))
		}
	}
	if w.sign != nil {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		set(HeaderID, id)
		set(HeaderTimestamp, ts)
		set(HeaderSignature, w.sign.sign(id, ts, r.Payload))
	}
}

// ceHeader maps a CloudEvents attribute to its HTTP binary-mode header, in canonical form,
// without allocating for the known attributes.
func ceHeader(attr string) string {
	switch attr {
	case "id":
		return "Ce-Id"
	case "source":
		return "Ce-Source"
	case "specversion":
		return "Ce-Specversion"
	case "type":
		return "Ce-Type"
	case "subject":
		return "Ce-Subject"
	case "time":
		return "Ce-Time"
	case sink.SeqAttribute:
		return "Ce-Outboxseq"
	default:
		return http.CanonicalHeaderKey("ce-" + attr)
	}
}

// maxUnsettled bounds unsettled; past it, every message is sent as a redelivery (attempt 2
// at least) until half of the set has settled.
const maxUnsettled = 1 << 16

// unsettled is the set of message ids sent without a settling answer.
type unsettled struct {
	mu   sync.Mutex
	ids  map[uuid.UUID]struct{}
	full bool
}

// sent records that id is being sent and reports whether it was sent before, unsettled (or
// may have been: the set is full).
func (u *unsettled) sent(id uuid.UUID) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.ids[id]; ok {
		return true
	}
	if u.ids == nil {
		u.ids = make(map[uuid.UUID]struct{})
	}
	if len(u.ids) >= maxUnsettled {
		u.full = true
		return true
	}
	u.ids[id] = struct{}{}
	return u.full
}

// settle forgets id: it was acknowledged or failed for good.
func (u *unsettled) settle(id uuid.UUID) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.ids, id)
	if u.full && len(u.ids) < maxUnsettled/2 {
		u.full = false
	}
}
