package nats

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultURL            = natsgo.DefaultURL
	DefaultSource         = "outbox"
	DefaultPublishTimeout = 5 * time.Second
	DefaultMaxPending     = 4096
	DefaultReconnectWait  = 500 * time.Millisecond
)

// ErrClosed is returned for every message published after Close.
var ErrClosed = errors.New("nats sink: closed")

// Config configures a Sink. The zero value publishes to nats://127.0.0.1:4222.
type Config struct {
	// URL is the server address, or several separated by commas. Default DefaultURL.
	// Mutually exclusive with Conn.
	URL string
	// Conn is an existing connection to publish on. The sink does not close it. For the
	// per-key order guarantee across reconnects, create it with nats.ReconnectBufSize(-1) so
	// that nothing is buffered while disconnected, and with nats.MaxReconnects(-1) and
	// nats.IgnoreAuthErrorAbort() so that neither an outage nor refused credentials close
	// it for good (the sink makes its own connection so). New does not check its
	// credentials.
	Conn *natsgo.Conn
	// Name is the client connection name shown by the server. Default "outbox-relay".
	Name string
	// Source is the CloudEvents source attribute: the name of the producing service.
	// Default DefaultSource.
	Source string
	// SubjectPrefix is put before every topic: subject = SubjectPrefix + topic.
	SubjectPrefix string
	// Stream, when set, is created (or updated to this configuration) before the first
	// publish. When NATS is unreachable at New, it is created on the first Publish that can.
	Stream *jetstream.StreamConfig
	// PublishTimeout bounds one Publish call: messages not acknowledged by JetStream by then
	// fail with a retryable error. Default DefaultPublishTimeout.
	PublishTimeout time.Duration
	// MaxPending is the most messages in flight (sent, not yet acknowledged) on the sink.
	// Default DefaultMaxPending.
	MaxPending int
	// ReconnectWait is the pause between reconnect attempts of a connection the sink makes.
	// Default DefaultReconnectWait.
	ReconnectWait time.Duration
	// Logger receives connection events. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid setting of c as an *outbox.ConfigError naming the field
// in snake_case (url, subject_prefix, stream.name, ...). It never quotes a server URL: one
// may carry a user, password or token. New returns the same errors; Validate lets a
// configuration be checked before anything connects. Zero values are valid: New replaces
// them by their defaults.
func (c Config) Validate() error {
	if c.URL != "" && c.Conn != nil {
		return &outbox.ConfigError{Field: "url", Reason: "set either url or conn, not both"}
	}
	if c.URL != "" {
		if reason := checkURLs(c.URL); reason != "" {
			return &outbox.ConfigError{Field: "url", Reason: reason}
		}
	}
	if c.PublishTimeout < 0 {
		return &outbox.ConfigError{Field: "publish_timeout", Reason: "must not be negative"}
	}
	if c.MaxPending < 0 {
		return &outbox.ConfigError{Field: "max_pending", Reason: "must not be negative"}
	}
	if c.ReconnectWait < 0 {
		return &outbox.ConfigError{Field: "reconnect_wait", Reason: "must not be negative"}
	}
	if c.SubjectPrefix != "" {
		// A prefix is valid when some topic can follow it: check it with one.
		if reason := checkSubject(c.SubjectPrefix + "x"); reason != "" {
			return &outbox.ConfigError{Field: "subject_prefix", Reason: reason}
		}
	}
	if hasControl(c.Source) {
		return &outbox.ConfigError{Field: "source", Reason: "contains a control character"}
	}
	if hasControl(c.Name) {
		return &outbox.ConfigError{Field: "name", Reason: "contains a control character"}
	}
	if c.Stream == nil {
		return nil
	}
	if c.Stream.Name == "" {
		return &outbox.ConfigError{Field: "stream.name", Reason: "must not be empty"}
	}
	if reason := checkStreamName(c.Stream.Name); reason != "" {
		return &outbox.ConfigError{Field: "stream.name", Reason: fmt.Sprintf("%q %s", c.Stream.Name, reason)}
	}
	for _, subject := range c.Stream.Subjects {
		if reason := checkStreamSubject(subject); reason != "" {
			return &outbox.ConfigError{Field: "stream.subjects", Reason: fmt.Sprintf("%q: %s", subject, reason)}
		}
	}
	return nil
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// checkURLs returns why urls, one server URL or several separated by commas, cannot be
// dialled, or "". As the client does, an address without a scheme is taken as nats://. It
// never quotes a URL: one may carry a user, password or token.
func checkURLs(urls string) string {
	for i, u := range strings.Split(urls, ",") {
		u = strings.TrimSpace(u)
		if u == "" {
			return "empty server address in the list"
		}
		if !strings.Contains(u, "://") {
			u = "nats://" + u
		}
		parsed, err := url.Parse(u)
		if err != nil {
			var uerr *url.Error
			if errors.As(err, &uerr) {
				err = uerr.Err // without the URL it quotes
			}
			return fmt.Sprintf("server %d: not a valid URL: %v", i+1, err)
		}
		switch parsed.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Sprintf("server %d: scheme must be nats, tls, ws or wss", i+1)
		}
		if parsed.Hostname() == "" {
			return fmt.Sprintf("server %d: no host", i+1)
		}
	}
	return ""
}

// checkStreamName returns why name cannot name a JetStream stream, or "".
func checkStreamName(name string) string {
	if len(name) > 255 {
		return "is longer than 255 bytes"
	}
	if strings.ContainsFunc(name, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune(".*>/\\", r)
	}) {
		return "must not contain whitespace, control characters, '.', '*', '>', '/' or '\\'"
	}
	return ""
}

// Sink publishes to NATS JetStream. It is safe for concurrent use.
type Sink struct {
	nc      *natsgo.Conn
	js      jetstream.JetStream
	ownConn bool
	url     string        // the configured server URLs without credentials, for errors (own connection only)
	closed  chan struct{} // closed by the connection's ClosedHandler (own connection only)
	closing atomic.Bool   // set before the sink closes its own connection on purpose

	source   string
	timeout  time.Duration
	log      *slog.Logger
	subjects subjectCache

	// Acknowledgements: every message's reply subject is inbox+"<batch>.<index>".
	inbox     string
	sub       *natsgo.Subscription
	inflight  chan struct{} // one token per message sent and not yet settled (MaxPending)
	nextBatch atomic.Uint64
	batchMu   sync.Mutex
	batches   map[uint64]*batch

	streamCfg   *jetstream.StreamConfig
	streamMu    sync.Mutex
	streamReady atomic.Bool

	closeOnce sync.Once
	closeErr  error
	mu        sync.RWMutex // guards isClosed against Publish
	isClosed  bool
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg, connects (or adopts cfg.Conn) and, when cfg.Stream is set, creates the
// stream. A connection the sink makes retries forever, also when NATS is down at start: New
// then returns a working sink whose publishes fail with retryable errors until NATS is up.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sink{
		nc:       cfg.Conn,
		source:   cmp.Or(cfg.Source, DefaultSource),
		timeout:  cmp.Or(cfg.PublishTimeout, DefaultPublishTimeout),
		log:      cmp.Or(cfg.Logger, slog.Default()),
		subjects: subjectCache{prefix: cfg.SubjectPrefix},
	}
	s.inflight = make(chan struct{}, cmp.Or(cfg.MaxPending, DefaultMaxPending))
	s.batches = make(map[uint64]*batch)
	if cfg.Stream != nil {
		sc := *cfg.Stream
		s.streamCfg = &sc
	}
	if s.nc == nil {
		s.ownConn = true
		s.url = redactURLs(cmp.Or(cfg.URL, DefaultURL))
		s.closed = make(chan struct{})
		nc, err := natsgo.Connect(cmp.Or(cfg.URL, DefaultURL),
			natsgo.Name(cmp.Or(cfg.Name, "outbox-relay")),
			natsgo.MaxReconnects(-1),
			natsgo.ReconnectWait(cmp.Or(cfg.ReconnectWait, DefaultReconnectWait)),
			natsgo.RetryOnFailedConnect(true),
			// Refused credentials do not close the connection for good (by default the
			// client gives up after the same auth error twice): an operator may fix them
			// on the server, and the sink must come back by itself when they do.
			natsgo.IgnoreAuthErrorAbort(),
			natsgo.ReconnectErrHandler(func(_ *natsgo.Conn, err error) {
				s.logConnErr("nats sink: reconnect failed, will keep trying", err)
			}),
			natsgo.ErrorHandler(func(_ *natsgo.Conn, _ *natsgo.Subscription, err error) {
				s.logConnErr("nats sink: error from the server", err)
			}),
			// Nothing is buffered while disconnected: a publish then fails at once instead of
			// being sent after the reconnect, behind earlier messages that may have been lost.
			natsgo.ReconnectBufSize(-1),
			natsgo.DrainTimeout(s.timeout),
			natsgo.ConnectHandler(func(nc *natsgo.Conn) {
				s.log.Info("nats sink connected", "url", nc.ConnectedUrlRedacted())
			}),
			natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
				if err != nil { // nil when closed on purpose
					s.log.Warn("nats sink disconnected", "error", err)
				}
			}),
			natsgo.ReconnectHandler(func(nc *natsgo.Conn) {
				s.log.Info("nats sink reconnected", "url", nc.ConnectedUrlRedacted())
			}),
			natsgo.ClosedHandler(func(nc *natsgo.Conn) {
				if !s.closing.Load() {
					// nats.go gave up on the connection (a server error it does not retry):
					// every Publish now fails as unavailable, so say why, loudly.
					s.log.Error("nats sink: the connection closed for good; restart the relay to publish again",
						"error", nc.LastError())
				}
				close(s.closed)
			}),
		)
		if err != nil {
			// With RetryOnFailedConnect this is a bad URL or option, not an outage.
			return nil, &outbox.ConfigError{Field: "url", Reason: err.Error()}
		}
		s.nc = nc
		if err := s.checkStartAuth(ctx); err != nil {
			s.closing.Store(true)
			s.nc.Close()
			return nil, err
		}
	}
	// Only for stream management: publishing does its own acknowledgement bookkeeping.
	js, err := jetstream.New(s.nc)
	if err != nil {
		_ = s.closeConn()
		return nil, fmt.Errorf("nats sink: creating JetStream context: %w", err)
	}
	s.js = js
	s.inbox = s.nc.NewInbox() + "."
	sub, err := s.nc.Subscribe(s.inbox+">", s.handleAck)
	if err != nil {
		_ = s.closeConn()
		return nil, fmt.Errorf("nats sink: subscribing to acknowledgements: %w", err)
	}
	// The in-flight limit already bounds how many acks can queue up; never drop one.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		_ = s.closeConn()
		return nil, fmt.Errorf("nats sink: subscribing to acknowledgements: %w", err)
	}
	s.sub = sub
	if s.streamCfg != nil && s.nc.IsConnected() {
		if err := s.ensureStream(ctx); err != nil {
			var apiErr *jetstream.APIError
			if errors.As(err, &apiErr) {
				// The server refused the configuration: retrying will not help.
				_ = sub.Unsubscribe()
				_ = s.closeConn()
				return nil, fmt.Errorf("nats sink: %w", err)
			}
			s.log.Warn("nats sink: stream not created yet, will retry on publish", "stream", s.streamCfg.Name, "error", err)
		}
	}
	return s, nil
}

// checkStartAuth returns an ErrAuth error when the first connection attempt was refused
// for its credentials. nats.go reports that attempt's error as the connection's last error
// while it goes on reconnecting in the background (RetryOnFailedConnect); any other failure
// (NATS down, unreachable) leaves a sink that connects once NATS is up.
func (s *Sink) checkStartAuth(ctx context.Context) error {
	if s.nc.IsConnected() {
		return nil
	}
	if err := s.nc.LastError(); isAuthErr(err) {
		return fmt.Errorf("%w by %s: %w (check the user, password, token or credentials in the url)",
			ErrAuth, s.url, err)
	}
	return nil
}

// redactURLs returns a comma-separated list of server URLs with any user, password or token
// replaced by "redacted".
func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if u, err := url.Parse(p); err == nil && u.User != nil {
			u.User = url.User("redacted")
			p = u.String()
		} else if err != nil {
			p = "(unparsable url)"
		}
		parts[i] = p
	}
	return strings.Join(parts, ",")
}

// logConnErr logs a connection error, at ERROR for refused credentials, which need an
// operator, and at WARN otherwise.
func (s *Sink) logConnErr(msg string, err error) {
	if err == nil {
		return
	}
	level := slog.LevelWarn
	if isAuthErr(err) {
		level = slog.LevelError
		msg += " (credentials refused: check the user, password, token or credentials in the url)"
	}
	s.log.Log(context.Background(), level, msg, "error", err)
}

// ensureStream creates or updates the configured stream once.
func (s *Sink) ensureStream(ctx context.Context) error {
	if s.streamReady.Load() {
		return nil
	}
	s.streamMu.Lock()
	defer s.streamMu.Unlock()
	if s.streamReady.Load() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.js.CreateOrUpdateStream(ctx, *s.streamCfg); err != nil {
		return fmt.Errorf("creating stream %q: %w", s.streamCfg.Name, err)
	}
	s.streamReady.Store(true)
	return nil
}

// Conn returns the connection the sink publishes on.
func (s *Sink) Conn() *natsgo.Conn { return s.nc }

// Close releases the sink. A connection the sink made is drained and closed; one passed in
// Config.Conn is left open. Close is idempotent.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		// Wait for running Publish calls: they hold the read lock until they return.
		s.mu.Lock()
		s.isClosed = true
		s.mu.Unlock()
		if s.ownConn {
			s.closeErr = s.closeConn()
		} else if err := s.sub.Unsubscribe(); err != nil && !errors.Is(err, natsgo.ErrConnectionClosed) {
			s.closeErr = fmt.Errorf("nats sink: unsubscribing: %w", err)
		}
	})
	return s.closeErr
}

func (s *Sink) closeConn() error {
	if !s.ownConn {
		return nil
	}
	s.closing.Store(true)
	if err := s.nc.Drain(); err != nil {
		// Not connected (or already closed): nothing to drain.
		s.nc.Close()
	}
	select {
	case <-s.closed:
		return nil
	case <-time.After(s.timeout + time.Second):
		s.nc.Close()
		return errors.New("nats sink: drain did not finish in time; connection closed")
	}
}
