package amqp

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultURL             = "amqp://guest:guest@127.0.0.1:5672/"
	DefaultSource          = "outbox"
	DefaultConnectionName  = "outbox-relay"
	DefaultPublishTimeout  = 10 * time.Second
	DefaultConnectTimeout  = 10 * time.Second
	DefaultHeartbeat       = 10 * time.Second
	DefaultReconnectWait   = 100 * time.Millisecond
	DefaultExchangeKind    = "topic"
	DefaultMaxMessageBytes = 128 << 20 // RabbitMQ's default max_message_size
)

// maxReconnectWait caps the exponential backoff between reconnect attempts.
const maxReconnectWait = 10 * time.Second

// maxShortstr is the longest AMQP 0-9-1 short string: exchange names, routing keys, property
// values such as content type, and header table keys.
const maxShortstr = 255

var (
	// ErrClosed is returned for every message published after Close.
	ErrClosed = errors.New("amqp sink: closed")
	// ErrNotConnected is wrapped by the Unavailable errors of messages not sent because the
	// sink has no connection to RabbitMQ at the moment (it is reconnecting).
	ErrNotConnected = errors.New("not connected to RabbitMQ")
	// ErrUnroutable is wrapped by the retryable error of a message the broker returned
	// because no queue is bound to its exchange with its routing key (basic.return).
	ErrUnroutable = errors.New("unroutable")
	// ErrNacked is wrapped by the Unavailable error of a message the broker refused to take
	// (basic.nack): a queue with x-overflow=reject-publish is full, or the broker could not
	// store it.
	ErrNacked = errors.New("nacked by the broker")
)

// Exchange is an exchange the sink declares (idempotently) on every connection, before it
// publishes.
type Exchange struct {
	// Name is the exchange to declare. Default: Config.Exchange; when both are set they
	// must be equal.
	Name string
	// Kind is the exchange type: direct, fanout, topic, headers, or a plugin type starting
	// with "x-". Default DefaultExchangeKind.
	Kind string
	// Transient declares a non-durable exchange, which a broker restart deletes together
	// with its bindings. By default the exchange is durable.
	Transient bool
}

// Config configures a Sink. The zero value publishes to the default exchange of a local
// RabbitMQ as guest, with routing key = topic (so a queue named like the topic receives it).
type Config struct {
	// URL is the AMQP URI, amqp:// or amqps://. Default DefaultURL.
	URL string
	// Exchange receives every message. Default "", the default exchange, which routes to
	// the queue named like the routing key.
	Exchange string
	// RoutingKeyPrefix is put before the topic: routing key = RoutingKeyPrefix + topic,
	// for topics not in RoutingKeys.
	RoutingKeyPrefix string
	// RoutingKeys maps a topic to its routing key exactly (no prefix is added).
	RoutingKeys map[string]string
	// DeclareExchange, when set, is declared on every (re)connection before publishing.
	DeclareExchange *Exchange
	// Source is the CloudEvents source attribute and the AMQP app-id: the name of the
	// producing service. Default DefaultSource.
	Source string
	// ConnectionName is shown by the broker's management UI. Default DefaultConnectionName.
	ConnectionName string
	// TLSConfig is used for amqps:// URLs. Default: the system roots, with the URL's host
	// as server name.
	TLSConfig *tls.Config
	// PublishTimeout bounds one Publish call: messages the broker has not confirmed by then
	// fail with a retryable error. Default DefaultPublishTimeout.
	PublishTimeout time.Duration
	// ConnectTimeout bounds dialing and the AMQP handshake. Default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// Heartbeat is the AMQP heartbeat interval proposed to the broker; a connection silent
	// for three intervals counts as dead. Default DefaultHeartbeat.
	Heartbeat time.Duration
	// ReconnectWait is the first pause between reconnect attempts; it doubles up to 10s.
	// Default DefaultReconnectWait.
	ReconnectWait time.Duration
	// MaxMessageBytes is the largest payload the sink sends. Larger messages fail
	// permanently without being sent: RabbitMQ closes the channel of a message over its
	// max_message_size, which would fail every other message in flight. Set it to the
	// broker's max_message_size. Default DefaultMaxMessageBytes (RabbitMQ's default).
	MaxMessageBytes int
	// Logger receives connection events. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid setting of c as an *outbox.ConfigError naming the field
// in snake_case (url, routing_keys, declare_exchange.name, ...). It never quotes the URL: it
// may hold a password. New returns the same errors; Validate lets a configuration be checked
// before anything connects. Zero values are valid: New replaces them by their defaults.
func (c Config) Validate() error {
	if c.URL != "" {
		if err := checkURL(c.URL); err != nil {
			return &outbox.ConfigError{Field: "url", Reason: err.Error()}
		}
	}
	if reason := checkName(c.Exchange); reason != "" {
		return &outbox.ConfigError{Field: "exchange", Reason: reason}
	}
	if reason := checkName(c.RoutingKeyPrefix); reason != "" {
		return &outbox.ConfigError{Field: "routing_key_prefix", Reason: reason}
	}
	for _, topic := range slices.Sorted(maps.Keys(c.RoutingKeys)) { // the same error every time
		key := c.RoutingKeys[topic]
		if topic == "" {
			return &outbox.ConfigError{Field: "routing_keys", Reason: "an empty topic is mapped"}
		}
		if reason := checkName(key); reason != "" {
			return &outbox.ConfigError{Field: "routing_keys", Reason: fmt.Sprintf("topic %q: %s", topic, reason)}
		}
	}
	if d := c.DeclareExchange; d != nil {
		name := cmp.Or(d.Name, c.Exchange)
		switch {
		case d.Name != "" && c.Exchange != "" && d.Name != c.Exchange:
			return &outbox.ConfigError{Field: "declare_exchange.name", Reason: fmt.Sprintf("%q differs from exchange %q; leave it empty to declare the exchange published to", d.Name, c.Exchange)}
		case name == "":
			return &outbox.ConfigError{Field: "declare_exchange.name", Reason: "the default exchange cannot be declared; set exchange"}
		case strings.HasPrefix(name, "amq."):
			return &outbox.ConfigError{Field: "declare_exchange.name", Reason: "names starting with amq. are reserved for the broker's own exchanges"}
		}
		if reason := checkName(name); reason != "" {
			return &outbox.ConfigError{Field: "declare_exchange.name", Reason: reason}
		}
		switch kind := d.Kind; {
		case kind == "", kind == "direct", kind == "fanout", kind == "topic", kind == "headers":
		case strings.HasPrefix(kind, "x-") && checkName(kind) == "":
		default:
			return &outbox.ConfigError{Field: "declare_exchange.kind", Reason: fmt.Sprintf("%q is not one of direct, fanout, topic, headers or an x- plugin type", kind)}
		}
	}
	if reason := checkName(c.Source); reason != "" {
		return &outbox.ConfigError{Field: "source", Reason: reason}
	}
	if reason := checkName(c.ConnectionName); reason != "" {
		return &outbox.ConfigError{Field: "connection_name", Reason: reason}
	}
	for _, d := range []struct {
		field string
		v     time.Duration
	}{
		{"publish_timeout", c.PublishTimeout},
		{"connect_timeout", c.ConnectTimeout},
		{"heartbeat", c.Heartbeat},
		{"reconnect_wait", c.ReconnectWait},
	} {
		if d.v < 0 {
			return &outbox.ConfigError{Field: d.field, Reason: "must not be negative"}
		}
	}
	if c.Heartbeat != 0 && c.Heartbeat < time.Second {
		return &outbox.ConfigError{Field: "heartbeat", Reason: "AMQP counts heartbeats in whole seconds: use at least 1s"}
	}
	if c.MaxMessageBytes < 0 {
		return &outbox.ConfigError{Field: "max_message_bytes", Reason: "must not be negative"}
	}
	return nil
}

// checkURL validates an AMQP URI without ever quoting it: it may hold a password.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return fmt.Errorf("not a valid URL: %v", uerr.Err)
		}
		return errors.New("not a valid URL")
	}
	if u.Scheme != "amqp" && u.Scheme != "amqps" {
		return fmt.Errorf("scheme %q is not amqp or amqps", u.Scheme)
	}
	if u.Hostname() == "" {
		return errors.New("no host (amqp://host:port/vhost, any credentials before the host)")
	}
	if _, err := amqp091.ParseURI(raw); err != nil {
		return errors.New("not a valid AMQP URI (amqp://user:password@host:port/vhost)")
	}
	return nil
}

// redactURL returns raw without its password, for logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return u.Redacted()
}

// checkName returns why s cannot be an AMQP short string (exchange, routing key, property),
// or "".
func checkName(s string) string {
	if len(s) > maxShortstr {
		return fmt.Sprintf("%d bytes, longer than the AMQP limit of %d", len(s), maxShortstr)
	}
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return "contains a control character"
		}
	}
	return ""
}

// Sink publishes to RabbitMQ (AMQP 0-9-1) with publisher confirms. It is safe for concurrent
// use.
type Sink struct {
	url            string
	exchange       string
	declare        *Exchange
	source         string
	connName       string
	tls            *tls.Config
	timeout        time.Duration
	connectTimeout time.Duration
	heartbeat      time.Duration
	reconnectWait  time.Duration
	maxBytes       int
	log            *slog.Logger
	keys           routingKeys

	cur     atomic.Pointer[session] // nil while disconnected
	lastErr atomic.Pointer[error]   // why the last connection attempt or session failed

	stop    context.CancelFunc // stops the connection manager
	stopped chan struct{}      // closed when the manager returned
	senders sync.WaitGroup     // batch senders still running

	closeOnce sync.Once
	mu        sync.RWMutex // guards isClosed against Publish
	isClosed  bool
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg, connects to RabbitMQ, declares Config.DeclareExchange and returns the
// sink. When the broker refuses the credentials, the virtual host or the exchange
// declaration, New fails. When it is unreachable, New returns a working sink that keeps
// reconnecting in the background; its publishes fail with retryable errors until then.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sink{
		url:            cmp.Or(cfg.URL, DefaultURL),
		exchange:       cfg.Exchange,
		source:         cmp.Or(cfg.Source, DefaultSource),
		connName:       cmp.Or(cfg.ConnectionName, DefaultConnectionName),
		tls:            cfg.TLSConfig,
		timeout:        cmp.Or(cfg.PublishTimeout, DefaultPublishTimeout),
		connectTimeout: cmp.Or(cfg.ConnectTimeout, DefaultConnectTimeout),
		heartbeat:      cmp.Or(cfg.Heartbeat, DefaultHeartbeat),
		reconnectWait:  cmp.Or(cfg.ReconnectWait, DefaultReconnectWait),
		maxBytes:       cmp.Or(cfg.MaxMessageBytes, DefaultMaxMessageBytes),
		log:            cmp.Or(cfg.Logger, slog.Default()),
		keys:           routingKeys{prefix: cfg.RoutingKeyPrefix, exact: cloneMap(cfg.RoutingKeys)},
		stopped:        make(chan struct{}),
	}
	if d := cfg.DeclareExchange; d != nil {
		s.declare = &Exchange{Name: cmp.Or(d.Name, cfg.Exchange), Kind: cmp.Or(d.Kind, DefaultExchangeKind), Transient: d.Transient}
		s.exchange = s.declare.Name
	}

	ss, err := s.connect(ctx)
	if err != nil {
		if isAuthErr(err) {
			return nil, fmt.Errorf("%w by %s: %w (check the user and password in the url)", ErrAuth, redactURL(s.url), err)
		}
		if refused(err) {
			return nil, fmt.Errorf("amqp sink: connecting to %s: %w", redactURL(s.url), err)
		}
		s.setErr(err)
		s.log.Warn("amqp sink: RabbitMQ unreachable, will keep trying", "url", redactURL(s.url), "error", err)
	} else {
		s.cur.Store(ss)
	}
	runCtx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go s.run(runCtx, ss)
	return s, nil
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// refused reports whether err is the broker refusing the connection or its setup (bad
// credentials, unknown vhost, an exchange declared with other properties): a configuration
// problem New reports rather than retries.
func refused(err error) bool {
	if errors.Is(err, amqp091.ErrCredentials) || errors.Is(err, amqp091.ErrVhost) {
		return true
	}
	var aerr *amqp091.Error
	if errors.As(err, &aerr) && aerr.Server {
		switch aerr.Code {
		case amqp091.AccessRefused, amqp091.NotAllowed, amqp091.PreconditionFailed, amqp091.CommandInvalid, amqp091.NotImplemented:
			return true
		}
	}
	return false
}

func (s *Sink) setErr(err error) { s.lastErr.Store(&err) }

func (s *Sink) lastError() error {
	if p := s.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// run keeps a session up until ctx ends: it waits for the current one to die, then redials
// with exponential backoff.
func (s *Sink) run(ctx context.Context, ss *session) {
	defer close(s.stopped)
	wait := s.reconnectWait
	for {
		if ss != nil {
			started := time.Now()
			select {
			case <-ss.dead:
			case <-ctx.Done():
				s.cur.Store(nil)
				ss.close()
				return
			}
			s.cur.Store(nil)
			err := ss.reason()
			s.setErr(err)
			s.log.Warn("amqp sink: connection lost, reconnecting", "error", err)
			ss.close()
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
		ss, err = s.connect(ctx)
		if err != nil {
			s.setErr(err)
			if ctx.Err() == nil && isAuthErr(err) {
				s.log.Error("amqp sink: reconnecting failed: RabbitMQ refuses the credentials (check the user and password in the url)",
					"url", redactURL(s.url), "error", err, "retry_in", wait)
			} else if ctx.Err() == nil {
				s.log.Warn("amqp sink: reconnecting failed", "url", redactURL(s.url), "error", err, "retry_in", wait)
			}
			continue
		}
		s.cur.Store(ss)
		s.log.Info("amqp sink: reconnected", "url", redactURL(s.url))
	}
}

// connect dials, opens a confirm-mode channel, declares the exchange and starts the
// session's reader.
func (s *Sink) connect(ctx context.Context) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, s.connectTimeout)
	defer cancel()
	props := amqp091.NewConnectionProperties()
	props.SetClientConnectionName(s.connName)
	var (
		dialMu sync.Mutex
		nc     net.Conn
	)
	cfg := amqp091.Config{
		Heartbeat:       s.heartbeat,
		Locale:          "en_US",
		Properties:      props,
		TLSClientConfig: s.tls.Clone(),
		Dial: func(network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// The handshake has no context: bound it by ctx's deadline (the library clears
			// the deadline once the connection is open).
			deadline, _ := ctx.Deadline()
			if err := c.SetDeadline(deadline); err != nil {
				_ = c.Close()
				return nil, err
			}
			dialMu.Lock()
			nc = c
			dialMu.Unlock()
			return c, nil
		},
	}
	// Cancellation (Close during a reconnect) interrupts the handshake.
	stopAbort := context.AfterFunc(ctx, func() {
		dialMu.Lock()
		defer dialMu.Unlock()
		if nc != nil {
			_ = nc.SetDeadline(time.Unix(1, 0))
		}
	})
	conn, err := amqp091.DialConfig(s.url, cfg)
	if !stopAbort() && err == nil {
		// ctx ended while the connection was being opened: its deadline may be broken.
		_ = conn.Close()
		return nil, ctx.Err()
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dialing: %w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("dialing: %w", err)
	}
	ss, err := s.open(conn)
	if err != nil {
		_ = conn.CloseDeadline(time.Now().Add(time.Second))
		return nil, err
	}
	return ss, nil
}

// open sets up a session on a new connection.
func (s *Sink) open(conn *amqp091.Connection) (*session, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, fmt.Errorf("opening channel: %w", err)
	}
	if d := s.declare; d != nil {
		if err := ch.ExchangeDeclare(d.Name, d.Kind, !d.Transient, false, false, false, nil); err != nil {
			return nil, fmt.Errorf("declaring exchange %q: %w", d.Name, err)
		}
	}
	if err := ch.Confirm(false); err != nil {
		return nil, fmt.Errorf("enabling publisher confirms: %w", err)
	}
	ss := &session{
		conn:    conn,
		ch:      ch,
		sem:     make(chan struct{}, 1),
		tags:    make(map[uint64]slotRef),
		returns: make(map[returnKey]returned),
		dead:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	// Confirmations may queue (the reader never blocks for long); returns must not: the
	// library hands a basic.return over before it processes the ack of the same message,
	// and the reader records the return before it reads that ack only if the hand-over is
	// synchronous. See session.read.
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 1024))
	returns := ch.NotifyReturn(make(chan amqp091.Return))
	chClose := ch.NotifyClose(make(chan *amqp091.Error, 1))
	connClose := conn.NotifyClose(make(chan *amqp091.Error, 1))
	blocked := conn.NotifyBlocked(make(chan amqp091.Blocking, 4))
	go ss.read(confirms, returns, chClose, connClose, blocked, s.log)
	return ss, nil
}

// Close stops reconnecting and closes the connection. Publish calls in progress finish first
// (within their timeout). Close is idempotent.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.isClosed = true
		s.mu.Unlock()
		s.stop()
		<-s.stopped
		// Senders left behind by a canceled Publish end once the connection is closed.
		s.senders.Wait()
	})
	return nil
}
