package mqtt

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultBroker         = "tcp://127.0.0.1:1883"
	DefaultSource         = "outbox"
	DefaultTopicSeparator = "/"
	DefaultKeepAlive      = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultPublishTimeout = 10 * time.Second
	DefaultReconnectWait  = 100 * time.Millisecond
)

// maxReconnectWait caps the exponential backoff between reconnect attempts.
const maxReconnectWait = 10 * time.Second

var (
	// ErrClosed is returned for every message published after Close.
	ErrClosed = errors.New("mqtt sink: closed")
	// ErrNotConnected is wrapped by the Unavailable errors of messages not sent because the
	// sink has no connection to the broker at the moment (it is reconnecting).
	ErrNotConnected = errors.New("not connected to the MQTT broker")
	// ErrConnectionLost is wrapped by the Unavailable errors of messages sent on a connection
	// that closed before the broker acknowledged them (PUBACK).
	ErrConnectionLost = errors.New("connection lost before PUBACK")
)

// Config configures a Sink. The zero value publishes to a local broker on port 1883 without
// credentials, mapping topic orders.created to MQTT topic orders/created.
type Config struct {
	// Broker is the broker address: tcp://host:port or mqtt://host:port (default port 1883),
	// ssl://, tls:// or mqtts:// for TLS (default port 8883). Default DefaultBroker.
	Broker string
	// ClientID identifies the connection to the broker, which disconnects an older
	// connection with the same id: give every relay its own. Default "outbox-" and random
	// characters, new for every sink.
	ClientID string
	// Username and Password authenticate the connection. Password is never logged.
	Username string
	Password string
	// TopicPrefix is put before every topic: MQTT topic = TopicPrefix + mapped topic.
	TopicPrefix string
	// TopicSeparator replaces every "." of an outbox topic, so that the dotted names used
	// elsewhere become MQTT topic levels. Default DefaultTopicSeparator ("/"); set "." to
	// keep topics as they are.
	TopicSeparator string
	// Source is the CloudEvents source attribute: the name of the producing service.
	// Default DefaultSource.
	Source string
	// KeepAlive is the MQTT keep-alive interval: the sink pings an idle connection and
	// counts it dead after 1.5 intervals without a packet from the broker. Whole seconds,
	// at most 65535s. Default DefaultKeepAlive.
	KeepAlive time.Duration
	// ConnectTimeout bounds dialing, TLS and the CONNECT/CONNACK exchange.
	// Default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// PublishTimeout bounds one Publish call: messages without a PUBACK by then fail with a
	// retryable error. Default DefaultPublishTimeout.
	PublishTimeout time.Duration
	// ReconnectWait is the first pause between reconnect attempts; it doubles up to 10s.
	// Default DefaultReconnectWait.
	ReconnectWait time.Duration
	// TLSConfig is used for ssl://, tls:// and mqtts:// brokers. Default: the system roots,
	// with the broker's host as server name.
	TLSConfig *tls.Config
	// Logger receives connection events. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid setting of c as an *outbox.ConfigError naming the field
// in snake_case (broker, topic_prefix, keep_alive, ...). It never quotes the broker URL nor
// describes the password. New returns the same errors; Validate lets a configuration be
// checked before anything connects. Zero values are valid: New replaces them by their
// defaults.
func (c Config) Validate() error {
	if c.Broker != "" {
		if _, _, err := parseBroker(c.Broker); err != nil {
			return &outbox.ConfigError{Field: "broker", Reason: err.Error()}
		}
	}
	if len(c.ClientID) > maxString {
		return &outbox.ConfigError{Field: "client_id", Reason: "longer than 65535 bytes"}
	}
	if reason := checkString(c.ClientID); reason != "" {
		return &outbox.ConfigError{Field: "client_id", Reason: reason}
	}
	if len(c.Username) > maxString {
		return &outbox.ConfigError{Field: "username", Reason: "longer than 65535 bytes"}
	}
	if reason := checkString(c.Username); reason != "" {
		return &outbox.ConfigError{Field: "username", Reason: reason}
	}
	if len(c.Password) > maxString {
		return &outbox.ConfigError{Field: "password", Reason: "longer than 65535 bytes"}
	}
	if c.Password != "" && c.Username == "" {
		// MQTT 5 allows it, but brokers that authenticate by username then see none.
		return &outbox.ConfigError{Field: "username", Reason: "required when password is set"}
	}
	for _, f := range []struct{ field, value string }{
		{"topic_prefix", c.TopicPrefix}, {"topic_separator", c.TopicSeparator}, {"source", c.Source},
	} {
		if len(f.value) > maxString {
			return &outbox.ConfigError{Field: f.field, Reason: "longer than 65535 bytes"}
		}
	}
	if reason := checkTopicPart(c.TopicPrefix); reason != "" {
		return &outbox.ConfigError{Field: "topic_prefix", Reason: reason}
	}
	if strings.HasPrefix(c.TopicPrefix, "$") {
		return &outbox.ConfigError{Field: "topic_prefix", Reason: "topics starting with $ are reserved for the broker"}
	}
	if reason := checkTopicPart(c.TopicSeparator); reason != "" {
		return &outbox.ConfigError{Field: "topic_separator", Reason: reason}
	}
	if reason := checkString(c.Source); reason != "" {
		return &outbox.ConfigError{Field: "source", Reason: reason}
	}
	switch {
	case c.KeepAlive < 0:
		return &outbox.ConfigError{Field: "keep_alive", Reason: "must not be negative"}
	case c.KeepAlive != 0 && c.KeepAlive < time.Second:
		return &outbox.ConfigError{Field: "keep_alive", Reason: "MQTT counts keep-alive in whole seconds: use at least 1s"}
	case c.KeepAlive > 65535*time.Second:
		return &outbox.ConfigError{Field: "keep_alive", Reason: "at most 65535s"}
	case c.ConnectTimeout < 0:
		return &outbox.ConfigError{Field: "connect_timeout", Reason: "must not be negative"}
	case c.PublishTimeout < 0:
		return &outbox.ConfigError{Field: "publish_timeout", Reason: "must not be negative"}
	case c.ReconnectWait < 0:
		return &outbox.ConfigError{Field: "reconnect_wait", Reason: "must not be negative"}
	}
	return nil
}

// parseBroker returns the address to dial and whether to use TLS. Errors never quote the
// URL: it may carry credentials.
func parseBroker(raw string) (addr string, useTLS bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return "", false, fmt.Errorf("not a valid URL: %v", uerr.Err)
		}
		return "", false, errors.New("not a valid URL")
	}
	port := "1883"
	switch u.Scheme {
	case "tcp", "mqtt":
	case "ssl", "tls", "mqtts":
		useTLS, port = true, "8883"
	default:
		return "", false, fmt.Errorf("scheme %q is not tcp, mqtt, ssl, tls or mqtts (websockets are not supported)", u.Scheme)
	}
	if u.User != nil {
		return "", false, errors.New("put credentials in username and password, not in the URL")
	}
	if u.Hostname() == "" {
		return "", false, errors.New("no host")
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return "", false, errors.New("a broker URL has no path or query")
	}
	if p := u.Port(); p != "" {
		port = p
	}
	return net.JoinHostPort(u.Hostname(), port), useTLS, nil
}

// Sink publishes to an MQTT 5 broker at QoS 1. It is safe for concurrent use.
type Sink struct {
	addr           string
	useTLS         bool
	tls            *tls.Config
	clientID       string
	username       string
	password       []byte
	source         string
	keepAlive      time.Duration
	connectTimeout time.Duration
	timeout        time.Duration
	reconnectWait  time.Duration
	log            *slog.Logger
	topics         topicCache

	cur     atomic.Pointer[conn] // nil while disconnected
	lastErr atomic.Pointer[error]

	stop    context.CancelFunc
	stopped chan struct{}
	senders sync.WaitGroup

	closeOnce sync.Once
	mu        sync.RWMutex // guards isClosed against Publish
	isClosed  bool
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg, connects to the broker and returns the sink. When the broker refuses
// the connection for good (bad credentials, not authorized, client id refused, MQTT 5 or
// QoS 1 unsupported), New fails. When it is unreachable, New returns a working sink that
// keeps reconnecting in the background; its publishes fail with retryable errors until then.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	addr, useTLS, _ := parseBroker(cmp.Or(cfg.Broker, DefaultBroker))
	s := &Sink{
		addr:           addr,
		useTLS:         useTLS,
		tls:            cfg.TLSConfig,
		clientID:       cfg.ClientID,
		username:       cfg.Username,
		password:       []byte(cfg.Password),
		source:         cmp.Or(cfg.Source, DefaultSource),
		keepAlive:      cmp.Or(cfg.KeepAlive, DefaultKeepAlive),
		connectTimeout: cmp.Or(cfg.ConnectTimeout, DefaultConnectTimeout),
		timeout:        cmp.Or(cfg.PublishTimeout, DefaultPublishTimeout),
		reconnectWait:  cmp.Or(cfg.ReconnectWait, DefaultReconnectWait),
		log:            cmp.Or(cfg.Logger, slog.Default()),
		topics:         topicCache{prefix: cfg.TopicPrefix, sep: cmp.Or(cfg.TopicSeparator, DefaultTopicSeparator)},
		stopped:        make(chan struct{}),
	}
	if s.clientID == "" {
		var b [8]byte
		_, _ = rand.Read(b[:])
		s.clientID = "outbox-" + hex.EncodeToString(b[:])
	}
	c, err := s.connect(ctx)
	if err != nil {
		var rerr *refusedError
		if isAuthRefusal(err) {
			return nil, fmt.Errorf("%w by %s: %w (check the username and password)", ErrAuth, s.addr, err)
		}
		if errors.As(err, &rerr) && rerr.permanent() {
			return nil, fmt.Errorf("mqtt sink: connecting to %s: %w", s.addr, err)
		}
		s.setErr(err)
		s.log.Warn("mqtt sink: broker unreachable, will keep trying", "broker", s.addr, "error", err)
	} else {
		s.cur.Store(c)
	}
	runCtx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.run(runCtx, c)
	return s, nil
}

func (s *Sink) setErr(err error) { s.lastErr.Store(&err) }

func (s *Sink) lastError() error {
	if p := s.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// ClientID returns the MQTT client identifier the sink connects with.
func (s *Sink) ClientID() string { return s.clientID }

// run keeps a connection up until ctx ends: it waits for the current one to die, then
// redials with exponential backoff.
func (s *Sink) run(ctx context.Context, c *conn) {
	defer close(s.stopped)
	wait := s.reconnectWait
	for {
		if c != nil {
			started := time.Now()
			select {
			case <-c.dead:
			case <-ctx.Done():
				s.cur.Store(nil)
				c.disconnect()
				return
			}
			s.cur.Store(nil)
			err := c.reason()
			s.setErr(err)
			s.log.Warn("mqtt sink: connection lost, reconnecting", "broker", s.addr, "error", err)
			c.wait()
			if time.Since(started) > maxReconnectWait {
				wait = s.reconnectWait // it was up for a while: start the backoff over
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		wait = min(2*wait, maxReconnectWait)
		var err error
		c, err = s.connect(ctx)
		if err != nil {
			s.setErr(err)
			if ctx.Err() == nil && isAuthRefusal(err) {
				s.log.Error("mqtt sink: reconnecting failed: the broker refuses the credentials (check the username and password)",
					"broker", s.addr, "error", err, "retry_in", wait)
			} else if ctx.Err() == nil {
				s.log.Warn("mqtt sink: reconnecting failed", "broker", s.addr, "error", err, "retry_in", wait)
			}
			continue
		}
		s.cur.Store(c)
		s.log.Info("mqtt sink: reconnected", "broker", s.addr)
	}
}

// Close disconnects from the broker (DISCONNECT, normal disconnection) and stops
// reconnecting. Publish calls in progress finish first (within their timeout). Close is
// idempotent.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.isClosed = true
		s.mu.Unlock()
		s.stop()
		<-s.stopped
		s.senders.Wait()
	})
	return nil
}
