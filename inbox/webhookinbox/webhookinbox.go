package webhookinbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/sink/webhook"
)

// Defaults applied to zero Config fields.
const (
	DefaultTolerance    = 5 * time.Minute
	DefaultMaxBodyBytes = 1 << 20
	DefaultRetryPause   = time.Second
	DefaultPathPrefix   = "/"
)

// secretPrefix marks a Standard Webhooks secret: "whsec_" + base64 of the key.
const secretPrefix = "whsec_"

// Errors of a request's verification (logged, never sent to the client beyond the status).
var (
	ErrMissingSignature = errors.New("webhookinbox: missing webhook-id, webhook-timestamp or webhook-signature")
	ErrTimestamp        = errors.New("webhookinbox: webhook-timestamp missing, malformed or outside the tolerance")
	ErrSignature        = errors.New("webhookinbox: no signature matches a configured secret")
)

// Config configures a Handler. Inbox, Handler and Secrets are required.
type Config struct {
	// Inbox applies the messages once. Required.
	Inbox *inbox.Inbox
	// Handler applies one message in the inbox's transaction. Required: requests are
	// handled by ServeHTTP, and Run redrives the retried dead letters with it.
	Handler inbox.Handler
	// Secrets are the sink's signing secrets, "whsec_<base64>" or raw (the key byte for byte,
	// as the webhook sink reads them). A request is accepted when one of its signatures
	// matches one of them: list the new and the old secret during a rotation. Required.
	Secrets []string
	// Tolerance is how far webhook-timestamp may be from this machine's clock, which bounds
	// replays of a captured request. Default DefaultTolerance.
	Tolerance time.Duration
	// MaxBodyBytes is the largest body accepted (413 above). Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Topic is the outbox topic of every request. When empty, the topic is the request's
	// path without PathPrefix (the webhook sink carries the topic only in the URL it is
	// configured with per topic: urls: {orders.created: https://host/hooks/orders.created}).
	Topic string
	// PathPrefix is removed from the path to give the topic when Topic is empty. Default "/".
	PathPrefix string
	// IgnoreHeaders are request headers that are not the message's, beyond those the
	// handler always drops (the HTTP and transport headers, ce-*, webhook-*,
	// Outbox-Attempt: see the package documentation): headers a proxy or the sink's
	// Config.Headers add.
	IgnoreHeaders []string
	// RetryPause is the Retry-After sent when the inbox itself failed. Default
	// DefaultRetryPause.
	RetryPause time.Duration
	// RedriveInterval is the period of the inbox's Redrive in Run. Default 5s.
	RedriveInterval time.Duration
	// RetentionInterval is the period of the inbox's RunRetention in Run; negative disables
	// it. Default one hour.
	RetentionInterval time.Duration
	// Logger receives refused and rejected requests. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid setting as an *outbox.ConfigError naming the field in
// snake_case. It never describes a secret.
func (c Config) Validate() error {
	bad := func(field, reason string) error { return &outbox.ConfigError{Field: field, Reason: reason} }
	switch {
	case c.Inbox == nil:
		return bad("inbox", "required")
	case c.Handler == nil:
		return bad("handler", "required")
	case len(c.Secrets) == 0:
		return bad("secrets", "at least one signing secret is required")
	case c.Tolerance < 0:
		return bad("tolerance", "must not be negative")
	case c.MaxBodyBytes < 0:
		return bad("max_body_bytes", "must not be negative")
	case c.RetryPause < 0:
		return bad("retry_pause", "must not be negative")
	case c.RedriveInterval < 0:
		return bad("redrive_interval", "must not be negative")
	}
	for i, s := range c.Secrets {
		if _, err := newVerifier(s); err != nil {
			return bad("secrets", fmt.Sprintf("secret %d: %v", i, err))
		}
	}
	for _, h := range c.IgnoreHeaders {
		if h == "" {
			return bad("ignore_headers", "empty header name")
		}
	}
	return nil
}

// newVerifier builds a Standard Webhooks verifier for one secret, read the way the webhook
// sink reads it. Errors never contain the secret.
func newVerifier(secret string) (*standardwebhooks.Webhook, error) {
	if secret == "" {
		return nil, errors.New("empty")
	}
	if strings.HasPrefix(secret, secretPrefix) {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			return nil, errors.New("the whsec_ form must be followed by non-empty standard base64")
		}
		return wh, nil
	}
	return standardwebhooks.NewWebhookRaw([]byte(secret))
}

// Handler is an http.Handler that verifies webhook requests and applies them through the
// inbox. Create it with New; serve it; call Run for the inbox's background work.
type Handler struct {
	cfg       Config
	in        *inbox.Inbox
	log       *slog.Logger
	verifiers []*standardwebhooks.Webhook
	ignore    map[string]bool
	runMu     sync.Mutex
}

// New validates cfg and returns a Handler.
func New(cfg Config) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Tolerance == 0 {
		cfg.Tolerance = DefaultTolerance
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.RetryPause == 0 {
		cfg.RetryPause = DefaultRetryPause
	}
	if cfg.PathPrefix == "" {
		cfg.PathPrefix = DefaultPathPrefix
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Handler{cfg: cfg, in: cfg.Inbox, log: cfg.Logger.With("consumer", cfg.Inbox.Consumer()), ignore: map[string]bool{}}
	for _, s := range cfg.Secrets {
		v, _ := newVerifier(s) // validated
		h.verifiers = append(h.verifiers, v)
	}
	for _, name := range transportHeaders {
		h.ignore[http.CanonicalHeaderKey(name)] = true
	}
	for _, name := range cfg.IgnoreHeaders {
		h.ignore[http.CanonicalHeaderKey(name)] = true
	}
	return h, nil
}

// Run runs the inbox's Redrive (retried dead letters, with Config.Handler) and, unless
// RetentionInterval is negative, RunRetention, until ctx ends; it returns nil then. Requests
// need no Run: they are applied by ServeHTTP.
func (h *Handler) Run(ctx context.Context) error {
	h.runMu.Lock()
	defer h.runMu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { _ = h.in.RunRedrive(ctx, h.cfg.Handler, h.cfg.RedriveInterval) })
	if h.cfg.RetentionInterval >= 0 {
		wg.Go(func() { _ = h.in.RunRetention(ctx, h.cfg.RetentionInterval) })
	}
	wg.Wait()
	return nil
}

// ServeHTTP verifies the request, decodes it and runs Deliver; see the package
// documentation for the statuses.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength > h.cfg.MaxBodyBytes {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the body failed", http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	if err := h.verify(r.Header, body, time.Now()); err != nil {
		h.log.WarnContext(ctx, "webhookinbox: refused a request", "remote", r.RemoteAddr, "path", r.URL.Path, "reason", err)
		http.Error(w, "signature verification failed", http.StatusUnauthorized)
		return
	}
	webhookID := r.Header.Get("Webhook-Id")
	msg, err := h.decode(r, body)
	if err != nil {
		h.reject(ctx, w, msg, "webhook:"+webhookID, err)
		return
	}
	// HTTP carries no redelivery flag: a request is counted unless the sender says it is the
	// message's first (see the package documentation).
	redelivered := r.Header.Get(webhook.HeaderAttempt) != "1"
	o, err := h.in.Deliver(ctx, inbox.Delivery{Message: msg, Redelivered: redelivered}, h.cfg.Handler)
	switch {
	case err != nil:
		if ctx.Err() == nil {
			h.log.WarnContext(ctx, "webhookinbox: the inbox failed; asking the sender to retry", "message_id", msg.ID, "error", err)
		}
		unavailable(w, h.cfg.RetryPause, "the inbox is unavailable")
	case o.Retry:
		h.log.DebugContext(ctx, "webhookinbox: the handler failed; asking the sender to retry", "message_id", msg.ID,
			"attempt", o.Attempt, "delay", o.Delay, "error", o.Err)
		unavailable(w, o.Delay, "the handler failed; retry later")
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// unavailable answers 503 with Retry-After in whole seconds (at least 1).
func unavailable(w http.ResponseWriter, delay time.Duration, text string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(delay.Seconds())))))
	http.Error(w, text, http.StatusServiceUnavailable)
}

// reject records an undecodable request in the dead letters and answers 2xx, or 503 when
// the inbox could not record it.
func (h *Handler) reject(ctx context.Context, w http.ResponseWriter, msg inbox.Message, id string, reason error) {
	msg.ID = id
	if len(msg.ID) > inbox.MaxIDBytes || !utf8.ValidString(msg.ID) {
		sum := sha256.Sum256([]byte(id))
		msg.ID = "webhook:" + hex.EncodeToString(sum[:16])
	}
	if len(msg.Key) > inbox.MaxKeyBytes || !utf8.ValidString(msg.Key) {
		msg.Key = ""
	}
	h.log.WarnContext(ctx, "webhookinbox: rejecting an unreadable message to the dead letters", "message_id", msg.ID, "reason", reason)
	if err := h.in.Reject(ctx, msg, reason); err != nil {
		h.log.WarnContext(ctx, "webhookinbox: rejecting failed; asking the sender to retry", "message_id", msg.ID, "error", err)
		unavailable(w, h.cfg.RetryPause, "the inbox is unavailable")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// verify checks the Standard Webhooks signature and timestamp.
func (h *Handler) verify(hdr http.Header, body []byte, now time.Time) error {
	if hdr.Get("Webhook-Id") == "" || hdr.Get("Webhook-Timestamp") == "" || hdr.Get("Webhook-Signature") == "" {
		return ErrMissingSignature
	}
	unix, err := strconv.ParseInt(hdr.Get("Webhook-Timestamp"), 10, 64)
	if err != nil {
		return ErrTimestamp
	}
	if d := now.Sub(time.Unix(unix, 0)); d > h.cfg.Tolerance || d < -h.cfg.Tolerance {
		return ErrTimestamp
	}
	for _, v := range h.verifiers {
		// The library compares in constant time (hmac.Equal) and accepts any of the
		// space-separated signatures; the timestamp was checked above with our tolerance.
		if v.VerifyIgnoringTimestamp(body, hdr) == nil {
			return nil
		}
	}
	return ErrSignature
}

// transportHeaders are request headers that belong to HTTP, the transport or the envelope,
// not to the message: they are never user headers (the sink refuses user headers named so,
// or its client adds them). ce-* and webhook-* are dropped by prefix.
var transportHeaders = []string{
	webhook.HeaderAttempt, "Accept", "Accept-Encoding", "Authorization", "Connection", "Content-Length", "Content-Type",
	"Cookie", "Expect", "Forwarded", "Host", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "User-Agent", "Via", "X-Forwarded-For",
	"X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip",
}

// decode reads the CloudEvents HTTP binding (binary mode): ce- headers percent-decoded as
// attributes, Content-Type as datacontenttype, the other headers (names lower-cased) as user
// headers, the body as the payload. The ce-id must be the signed webhook-id, so that a
// replayed body cannot pass for another message.
func (h *Handler) decode(r *http.Request, body []byte) (inbox.Message, error) {
	env := inbox.Envelope{Topic: h.topic(r), Attributes: map[string]string{}, Payload: body}
	var bad error
	for name, vals := range r.Header {
		lower := strings.ToLower(name)
		switch {
		case strings.HasPrefix(lower, "ce-"):
			v, err := url.PathUnescape(strings.Join(vals, ","))
			if err != nil && bad == nil {
				bad = fmt.Errorf("%w: header %.64s is not percent-encoded", inbox.ErrInvalidMessage, name)
			}
			env.Attributes[lower[3:]] = v
		case lower == "content-type":
			env.Attributes["datacontenttype"] = vals[0]
		case strings.HasPrefix(lower, "webhook-"), h.ignore[name]:
		default:
			if env.Headers == nil {
				env.Headers = map[string]string{}
			}
			env.Headers[lower] = strings.Join(vals, ", ")
		}
	}
	m, err := env.Message()
	switch {
	case err != nil:
		return m, err
	case bad != nil:
		return m, bad
	case m.ID != r.Header.Get("Webhook-Id"):
		return m, fmt.Errorf("%w: ce-id %.64q is not the signed webhook-id", inbox.ErrInvalidMessage, m.ID)
	case m.Topic == "":
		return m, fmt.Errorf("%w: no topic (set Config.Topic, or post to PathPrefix + topic)", inbox.ErrInvalidMessage)
	}
	return m, nil
}

// topic is Config.Topic, or the path without PathPrefix.
func (h *Handler) topic(r *http.Request) string {
	if h.cfg.Topic != "" {
		return h.cfg.Topic
	}
	t, _ := strings.CutPrefix(r.URL.Path, h.cfg.PathPrefix)
	return t
}
