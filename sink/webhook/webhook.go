package webhook

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultSource         = "outbox"
	DefaultTimeout        = 10 * time.Second
	DefaultMaxConcurrency = 16
	// DefaultContentType is unused: a message without a content-type header is sent without
	// a Content-Type, as the CloudEvents HTTP binding has it (no datacontenttype, no header).
	//
	// Deprecated: the sink no longer invents a content type.
	DefaultContentType = "application/octet-stream"
	// UserAgent is sent unless Config.Headers sets one.
	UserAgent = "outbox-webhook"
)

// ErrClosed is returned for every message published after Close.
var ErrClosed = errors.New("webhook sink: closed")

// Config configures a Sink.
type Config struct {
	// URL receives every message whose topic is not in URLs. Required unless URLs is set.
	// Only http and https URLs are accepted. Errors and logs name an endpoint by scheme and
	// host only, because webhook URLs often carry tokens in their path or query.
	URL string
	// URLs maps topics to their own endpoints. A message whose topic is neither in URLs nor
	// covered by URL fails permanently.
	URLs map[string]string
	// Secrets sign every request the Standard Webhooks way (webhook-id, webhook-timestamp,
	// webhook-signature headers). Give a secret as "whsec_" + base64 of the key (the
	// Standard Webhooks form), or any other string, whose bytes are then the key. During a
	// rotation list the new and the old secret: each request carries a signature made with
	// each. No secret: requests are not signed. Secrets are never logged nor put in errors.
	Secrets []string
	// Headers are sent with every request, e.g. Authorization. They take precedence over
	// the message's own headers. Their values are never logged nor put in errors.
	Headers map[string]string
	// Timeout bounds each request, from connecting to reading the response.
	// Default DefaultTimeout.
	Timeout time.Duration
	// MaxConcurrency is the most requests in flight at once across the sink. Messages of
	// one key are always sent one after the other. Default DefaultMaxConcurrency.
	MaxConcurrency int
	// Client sends the requests. Default: a client with its own connection pool sized for
	// MaxConcurrency. Redirects are never followed, also with a custom client (the sink
	// uses a copy whose CheckRedirect stops at the first response).
	Client *http.Client
	// Source is the CloudEvents source attribute: the name of the producing service.
	// Default DefaultSource.
	Source string
	// Logger receives configuration warnings. Default slog.Default().
	Logger *slog.Logger
}

// reservedHeaders are set by the sink or by net/http and cannot be configured.
var reservedHeaders = map[string]bool{
	"content-type": true, "content-length": true, "host": true, "transfer-encoding": true,
	"connection": true, "te": true, "trailer": true, "upgrade": true, "keep-alive": true,
	"proxy-connection": true, "webhook-id": true, "webhook-timestamp": true, "webhook-signature": true,
	"outbox-attempt": true,
}

func isReserved(name string) bool {
	lower := strings.ToLower(name)
	return reservedHeaders[lower] || strings.HasPrefix(lower, "ce-")
}

// Validate reports the first invalid setting of c as an *outbox.ConfigError naming the field
// in snake_case (url, urls, secrets, headers, ...). It never quotes a URL, a secret or a
// header value: they may hold tokens. New returns the same errors; Validate lets a
// configuration be checked before the sink is made. Zero values are valid, except that URL
// or URLs is required: New replaces them by their defaults.
func (c Config) Validate() error {
	_, err := c.validate()
	return err
}

// validate checks c and returns the signing keys of its secrets.
func (c *Config) validate() ([][]byte, error) {
	if c.URL == "" && len(c.URLs) == 0 {
		return nil, &outbox.ConfigError{Field: "url", Reason: "required (or urls)"}
	}
	if c.URL != "" {
		if reason := checkURL(c.URL); reason != "" {
			return nil, &outbox.ConfigError{Field: "url", Reason: reason}
		}
	}
	for _, topic := range sortedKeys(c.URLs) {
		if topic == "" {
			return nil, &outbox.ConfigError{Field: "urls", Reason: "empty topic"}
		}
		if reason := checkURL(c.URLs[topic]); reason != "" {
			return nil, &outbox.ConfigError{Field: "urls", Reason: fmt.Sprintf("topic %q: %s", topic, reason)}
		}
	}
	keys := make([][]byte, 0, len(c.Secrets))
	for i, secret := range c.Secrets {
		key, err := decodeSecret(secret)
		if err != nil {
			return nil, &outbox.ConfigError{Field: "secrets", Reason: fmt.Sprintf("secret %d: %v", i+1, err)}
		}
		keys = append(keys, key)
	}
	for _, name := range sortedKeys(c.Headers) {
		if reason := checkHeaderName(name); reason != "" {
			return nil, &outbox.ConfigError{Field: "headers", Reason: fmt.Sprintf("header %q: %s", name, reason)}
		}
		if isReserved(name) {
			return nil, &outbox.ConfigError{Field: "headers", Reason: fmt.Sprintf("header %q is set by the sink", name)}
		}
		if !validHeaderValue(c.Headers[name]) {
			return nil, &outbox.ConfigError{Field: "headers", Reason: fmt.Sprintf("header %q: value contains a control character", name)}
		}
	}
	if c.Timeout < 0 {
		return nil, &outbox.ConfigError{Field: "timeout", Reason: "must not be negative"}
	}
	if c.MaxConcurrency < 0 {
		return nil, &outbox.ConfigError{Field: "max_concurrency", Reason: "must not be negative"}
	}
	for i := 0; i < len(c.Source); i++ {
		if c.Source[i] < 0x20 || c.Source[i] == 0x7f {
			return nil, &outbox.ConfigError{Field: "source", Reason: "contains a control character"}
		}
	}
	return keys, nil
}

// checkURL returns why raw is not a usable endpoint, without repeating raw (it may hold a
// token).
func checkURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return "not a valid URL: " + err.Error()
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "scheme must be http or https"
	}
	if u.Host == "" {
		return "has no host"
	}
	if u.Fragment != "" {
		return "must not have a fragment"
	}
	return ""
}

// origin returns scheme://host of raw: how errors name an endpoint.
func origin(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// endpoint is a destination URL and its name for errors.
type endpoint struct {
	url    string
	origin string
}

// staticHeader is a configured header in canonical form.
type staticHeader struct {
	name, value string
}

// Sink posts outbox messages to HTTP endpoints. It is safe for concurrent use.
type Sink struct {
	client       *http.Client
	ownTransport *http.Transport // nil with a custom client

	def     *endpoint            // Config.URL, nil when unset
	byTopic map[string]*endpoint // Config.URLs
	keys    [][]byte
	static  []staticHeader
	hasUA   bool
	redact  []string // secrets, header values and URL tokens to scrub from response excerpts
	timeout time.Duration
	sem     chan struct{} // one token per request in flight (MaxConcurrency)
	source  string
	log     *slog.Logger

	// unsettled holds the ids sent without an answer that settles them (no response, a
	// retryable status): a next send of one is not its first (HeaderAttempt).
	unsettled unsettled

	closeOnce sync.Once
	mu        sync.RWMutex // guards isClosed against Publish
	isClosed  bool
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg and creates the sink. It makes no request: endpoints that are down at
// start only fail the publishes (retryably) until they are up.
func New(_ context.Context, cfg Config) (*Sink, error) {
	keys, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	maxConc := cmp.Or(cfg.MaxConcurrency, DefaultMaxConcurrency)
	s := &Sink{
		keys:    keys,
		timeout: cmp.Or(cfg.Timeout, DefaultTimeout),
		sem:     make(chan struct{}, maxConc),
		source:  cmp.Or(cfg.Source, DefaultSource),
		log:     cmp.Or(cfg.Logger, slog.Default()),
	}
	if cfg.URL != "" {
		s.def = &endpoint{url: cfg.URL, origin: origin(cfg.URL)}
		s.redact = appendURLRedactions(s.redact, cfg.URL)
	}
	if len(cfg.URLs) > 0 {
		s.byTopic = make(map[string]*endpoint, len(cfg.URLs))
		for topic, u := range cfg.URLs {
			s.byTopic[topic] = &endpoint{url: u, origin: origin(u)}
			s.redact = appendURLRedactions(s.redact, u)
		}
	}
	for _, name := range sortedKeys(cfg.Headers) {
		v := cfg.Headers[name]
		canon := http.CanonicalHeaderKey(name)
		s.static = append(s.static, staticHeader{canon, v})
		if canon == "User-Agent" {
			s.hasUA = true
		}
		s.redact = appendRedactions(s.redact, v)
	}
	for i, secret := range cfg.Secrets {
		s.redact = appendRedactions(s.redact, secret)
		if len(keys[i]) < 24 {
			s.log.Warn("webhook sink: a signing secret is shorter than 24 bytes; Standard Webhooks recommends 24 to 64 random bytes",
				"secret", i+1)
		}
	}
	// Longest first, so that a value containing another is scrubbed whole.
	sort.Slice(s.redact, func(i, j int) bool { return len(s.redact[i]) > len(s.redact[j]) })

	if cfg.Client != nil {
		c := *cfg.Client
		c.CheckRedirect = noRedirect
		s.client = &c
	} else {
		var tr *http.Transport
		if dt, ok := http.DefaultTransport.(*http.Transport); ok {
			tr = dt.Clone()
		} else { // replaced by instrumentation: start from net/http's defaults
			tr = &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				ForceAttemptHTTP2:     true,
				MaxIdleConns:          100,
				IdleConnTimeout:       90 * time.Second,
				TLSHandshakeTimeout:   10 * time.Second,
				ExpectContinueTimeout: time.Second,
			}
		}
		tr.MaxIdleConnsPerHost = maxConc
		tr.MaxIdleConns = max(tr.MaxIdleConns, maxConc)
		s.ownTransport = tr
		s.client = &http.Client{Transport: tr, CheckRedirect: noRedirect}
	}
	return s, nil
}

// noRedirect makes the client return a 3xx response instead of following it: a redirect
// would re-send the signed payload to a destination nobody configured.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// appendRedactions adds v and its whitespace-separated parts (the token of "Bearer <token>")
// to list, skipping parts too short to be secret.
func appendRedactions(list []string, v string) []string {
	const minLen = 6
	if len(v) >= minLen {
		list = append(list, v)
	}
	if parts := strings.Fields(v); len(parts) > 1 {
		for _, p := range parts {
			if len(p) >= minLen {
				list = append(list, p)
			}
		}
	}
	return list
}

// appendURLRedactions adds the parts of an endpoint URL that may be secret, when they look
// like tokens: endpoints echo their path in error pages ("Cannot POST /services/T0/B0/XYZ").
func appendURLRedactions(list []string, raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return list
	}
	add := func(v string) {
		if len(v) >= 8 && !strings.ContainsAny(v, " \t") {
			list = append(list, v)
		}
	}
	add(u.EscapedPath())
	add(u.Path)
	for _, seg := range strings.Split(u.Path, "/") {
		add(seg)
	}
	add(u.RawQuery)
	for _, vs := range u.Query() {
		for _, v := range vs {
			add(v)
		}
	}
	if u.User != nil {
		add(u.User.String())
		if p, ok := u.User.Password(); ok {
			add(p)
		}
	}
	return list
}

// Close stops the sink: it waits for running Publish calls, then releases the idle
// connections of its own client (a custom Config.Client is left alone). Close is
// idempotent.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.isClosed = true
		s.mu.Unlock()
		if s.ownTransport != nil {
			s.ownTransport.CloseIdleConnections()
		}
	})
	return nil
}

// endpointFor returns where topic's messages go, or nil.
func (s *Sink) endpointFor(topic string) *endpoint {
	if e, ok := s.byTopic[topic]; ok {
		return e
	}
	return s.def
}
