package webhook

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/envelope"
	"github.com/outboxgo/outbox/sink/internal/unavail"
)

// sinkWide reports whether a failed request says the endpoint as a whole cannot take
// messages now rather than that this message failed: no response at all (dial errors,
// refused or reset connections, TLS failures, Config.Timeout, the Publish context ending,
// the sink closed), or a status that is the endpoint's or its gateway's: 401 and 403
// (credentials refused), 408 and 429 (timeout, rate limit), 502, 503 and 504 (gateway,
// overload, gateway timeout). A 500 or another 5xx may be this message crashing the
// handler: it is retried and counted.
func sinkWide(err error) bool {
	var serr *StatusError
	if !errors.As(err, &serr) {
		return true
	}
	switch serr.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// markUnavailable wraps every sink-wide result of res with sink.Unavailable.
func markUnavailable(res []error) { unavail.Mark(res, sinkWide) }

// StatusError is a response with a status other than 2xx. It is returned wrapped in
// sink.Permanent for 3xx and 4xx (except 401, 403, 408, 425 and 429), in a *RetryAfterError
// when a retryable response carried a usable Retry-After header, and as is otherwise; the
// sink-wide ones (see the package documentation) wrapped in sink.Unavailable.
type StatusError struct {
	StatusCode int
	// Endpoint is the scheme and host the request went to.
	Endpoint string
	Topic    string
	// Body is the start of the response body (at most 256 bytes), with control characters
	// replaced and configured secrets and header values removed.
	Body string
	// Location is the scheme and host of a redirect's target (redirects are not followed).
	Location string
}

func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "webhook sink: POST to %s (topic %q): %d %s", e.Endpoint, e.Topic, e.StatusCode, http.StatusText(e.StatusCode))
	if e.StatusCode >= 300 && e.StatusCode < 400 {
		if e.Location != "" {
			fmt.Fprintf(&b, ", redirect to %s not followed (configure the final URL)", e.Location)
		} else {
			b.WriteString(", redirect not followed (configure the final URL)")
		}
	}
	if e.Body != "" {
		fmt.Fprintf(&b, ": %s", e.Body)
	}
	return b.String()
}

// RetryAfterError is a retryable failure whose response said when to try again: a 408, 425,
// 429 or 5xx response with a Retry-After header, in seconds or as an HTTP date. Err is the
// *StatusError.
type RetryAfterError struct {
	// Delay is how long the endpoint asked to wait, from when the response arrived.
	Delay time.Duration
	Err   error
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.Delay)
}

func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter returns Delay: how long the endpoint asked to wait before the next attempt. It
// implements sink.RetryAfter, which the relay honours.
func (e *RetryAfterError) RetryAfter() time.Duration { return e.Delay }

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date (RFC 9110 10.2.3).
// A date in the past means no delay.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		// Cap absurd values rather than overflow.
		const maxSecs = int64(365 * 24 * time.Hour / time.Second)
		return time.Duration(min(secs, maxSecs)) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// maxExcerpt is how much of an error response's body an error quotes.
const maxExcerpt = 256

// excerpt makes the start of a response body safe to put in an error (and so in the
// outbox's last_error column and the dashboard): valid UTF-8, control characters and runs
// of whitespace replaced by one space, the redact strings removed, at most maxExcerpt bytes,
// "…" when cut.
func excerpt(body []byte, truncated bool, redact []string) string {
	if truncated {
		// The cut may have split the last character.
		for i := len(body) - 1; i >= 0 && i >= len(body)-utf8.UTFMax; i-- {
			if utf8.RuneStart(body[i]) {
				if !utf8.FullRune(body[i:]) {
					body = body[:i]
				}
				break
			}
		}
	}
	var b strings.Builder
	space := false
	for _, r := range strings.ToValidUTF8(string(body), "\uFFFD") {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == ' ' {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	s := b.String()
	for _, secret := range redact {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	if len(s) > maxExcerpt {
		return outbox.CutText(s, maxExcerpt)
	}
	if truncated {
		s += "…"
	}
	return s
}

// checkHeaderName returns why name is not an HTTP field name (RFC 9110 token), or "".
func checkHeaderName(name string) string {
	if name == "" {
		return "empty name"
	}
	if c, ok := envelope.NonToken(name); ok {
		return fmt.Sprintf("character %q not allowed in a header name", c)
	}
	return ""
}

// validHeaderValue reports whether v can be sent as a field value: no control characters
// other than tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
