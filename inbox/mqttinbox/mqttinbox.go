package mqttinbox

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
)

// Defaults applied to zero Config fields.
const (
	DefaultBroker         = "tcp://127.0.0.1:1883"
	DefaultTopicSeparator = "/"
	DefaultSessionExpiry  = time.Hour
	DefaultKeepAlive      = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultReceiveMaximum = 100
	DefaultRetryPause     = time.Second
	maxReconnectWait      = 10 * time.Second
	maxString             = 65535
)

// ErrRunning is returned by Run while another Run of the same Consumer is going on: one
// client id is one MQTT session, and the broker would disconnect the older connection.
var ErrRunning = errors.New("mqttinbox: Run is already running")

// ErrRefused is wrapped by the error Run returns when the broker refuses the connection or
// the subscription for good (bad credentials, not authorized, client id refused).
var ErrRefused = errors.New("mqttinbox: refused by the broker")

// Config configures a Consumer. Inbox and ClientID are required.
type Config struct {
	// Inbox applies the messages once. Required.
	Inbox *inbox.Inbox
	// Broker is tcp://host:port or mqtt://host:port (default port 1883), or ssl://, tls://,
	// mqtts:// for TLS (default port 8883). Default DefaultBroker.
	Broker string
	// ClientID names the persistent MQTT session: the broker keeps the subscription and the
	// unacknowledged messages under it while the consumer is away (for SessionExpiry).
	// Required, stable across restarts, and unique: the broker disconnects an older
	// connection with the same id.
	ClientID string
	// Username and Password authenticate the connection. Password is never logged.
	Username string
	Password string
	// TopicPrefix and TopicSeparator are the sink's settings: an MQTT topic is mapped back
	// to the outbox topic by removing TopicPrefix and replacing every TopicSeparator by ".".
	// TopicSeparator defaults to DefaultTopicSeparator ("/").
	TopicPrefix    string
	TopicSeparator string
	// Filter is the MQTT topic filter subscribed to at QoS 1. Default TopicPrefix + "#".
	// A shared subscription ("$share/<group>/<filter>") spreads the messages over several
	// consumers with the same Inbox consumer name (see the package documentation on order).
	Filter string
	// SessionExpiry is how long the broker keeps the session (subscription and pending
	// messages) after the connection closes; whole seconds. Default DefaultSessionExpiry.
	SessionExpiry time.Duration
	// KeepAlive is the MQTT keep-alive interval, whole seconds. Default DefaultKeepAlive.
	KeepAlive time.Duration
	// ConnectTimeout bounds dialing and the CONNECT/CONNACK exchange. Default
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// ReceiveMaximum is how many unacknowledged messages the broker may send before it waits
	// for acknowledgements (the broker may allow fewer). Default DefaultReceiveMaximum.
	ReceiveMaximum int
	// TLSConfig is used for ssl://, tls:// and mqtts:// brokers.
	TLSConfig *tls.Config
	// Batch is how many messages go into one transaction (DeliverBatch over the messages
	// that have arrived, never waiting for more). Default 1: one Deliver per message.
	Batch int
	// RetryPause is how long a message waits after the inbox itself failed (its database
	// was unreachable) before it is delivered again. Default DefaultRetryPause.
	RetryPause time.Duration
	// RedriveInterval is the period of the inbox's Redrive (retried dead letters). Default
	// 5s (inbox.RunRedrive's).
	RedriveInterval time.Duration
	// RetentionInterval is the period of the inbox's RunRetention; negative disables it
	// (run it elsewhere). Default one hour.
	RetentionInterval time.Duration
	// Logger receives connection events and rejected messages. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid setting as an *outbox.ConfigError naming the field in
// snake_case. It never quotes the broker URL nor describes the password.
func (c Config) Validate() error {
	bad := func(field, reason string) error { return &outbox.ConfigError{Field: field, Reason: reason} }
	if c.Inbox == nil {
		return bad("inbox", "required")
	}
	if c.Broker != "" {
		if _, err := parseBroker(c.Broker); err != nil {
			return bad("broker", err.Error())
		}
	}
	switch {
	case c.ClientID == "":
		return bad("client_id", "required: it names the persistent session")
	case len(c.ClientID) > maxString || !validString(c.ClientID):
		return bad("client_id", "must be a valid MQTT string")
	case len(c.Username) > maxString || !validString(c.Username):
		return bad("username", "must be a valid MQTT string")
	case len(c.Password) > maxString:
		return bad("password", "longer than 65535 bytes")
	case c.Password != "" && c.Username == "":
		return bad("username", "required when password is set")
	case strings.ContainsAny(c.TopicPrefix, "+#") || !validString(c.TopicPrefix):
		return bad("topic_prefix", "must be a valid MQTT string without wildcards")
	case c.TopicSeparator != "" && (strings.ContainsAny(c.TopicSeparator, "+#") || !validString(c.TopicSeparator)):
		return bad("topic_separator", "must be a valid MQTT string without wildcards")
	case c.Filter != "" && !validString(c.Filter):
		return bad("filter", "must be a valid MQTT string")
	case c.SessionExpiry < 0:
		return bad("session_expiry", "must not be negative")
	case c.SessionExpiry != 0 && c.SessionExpiry < time.Second:
		return bad("session_expiry", "MQTT counts it in whole seconds: use at least 1s (the session must outlive a reconnect)")
	case c.SessionExpiry > time.Duration(1<<32-1)*time.Second:
		return bad("session_expiry", "at most 4294967295s")
	case c.KeepAlive < 0, c.KeepAlive != 0 && c.KeepAlive < time.Second, c.KeepAlive > 65535*time.Second:
		return bad("keep_alive", "whole seconds from 1s to 65535s")
	case c.ConnectTimeout < 0:
		return bad("connect_timeout", "must not be negative")
	case c.ReceiveMaximum < 0 || c.ReceiveMaximum > 65535:
		return bad("receive_maximum", "from 1 to 65535")
	case c.Batch < 0:
		return bad("batch", "must not be negative")
	case c.RetryPause < 0:
		return bad("retry_pause", "must not be negative")
	case c.RedriveInterval < 0:
		return bad("redrive_interval", "must not be negative")
	}
	return nil
}

func validString(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// parseBroker returns the broker URL for autopaho. Errors never quote the URL.
func parseBroker(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	port := "1883"
	switch u.Scheme {
	case "tcp", "mqtt":
		u.Scheme = "mqtt"
	case "ssl", "tls", "mqtts":
		u.Scheme, port = "tls", "8883"
	default:
		return nil, fmt.Errorf("scheme %q is not tcp, mqtt, ssl, tls or mqtts", u.Scheme)
	}
	switch {
	case u.User != nil:
		return nil, errors.New("put credentials in username and password, not in the URL")
	case u.Hostname() == "":
		return nil, errors.New("no host")
	case u.Path != "" && u.Path != "/" || u.RawQuery != "":
		return nil, errors.New("a broker URL has no path or query")
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	u.Path = ""
	return u, nil
}

// Consumer consumes an MQTT 5 subscription into an inbox. Create it with New and call Run.
type Consumer struct {
	cfg     Config
	broker  *url.URL
	in      *inbox.Inbox
	log     *slog.Logger
	sep     string
	filter  string
	running atomic.Bool
}

// New validates cfg and returns a Consumer. It does not connect: Run does.
func New(cfg Config) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Broker == "" {
		cfg.Broker = DefaultBroker
	}
	u, _ := parseBroker(cfg.Broker) // validated
	if cfg.TopicSeparator == "" {
		cfg.TopicSeparator = DefaultTopicSeparator
	}
	if cfg.SessionExpiry == 0 {
		cfg.SessionExpiry = DefaultSessionExpiry
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.ReceiveMaximum == 0 {
		cfg.ReceiveMaximum = DefaultReceiveMaximum
	}
	if cfg.Batch == 0 {
		cfg.Batch = 1
	}
	if cfg.RetryPause == 0 {
		cfg.RetryPause = DefaultRetryPause
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	filter := cfg.Filter
	if filter == "" {
		filter = cfg.TopicPrefix + "#"
	}
	return &Consumer{
		cfg: cfg, broker: u, in: cfg.Inbox, sep: cfg.TopicSeparator, filter: filter,
		log: cfg.Logger.With("client_id", cfg.ClientID, "consumer", cfg.Inbox.Consumer()),
	}, nil
}

// Run connects, subscribes and applies the messages with handler until ctx ends; it returns
// nil then. It reconnects through broker outages (resuming the session, so that
// unacknowledged messages are redelivered), and runs the inbox's Redrive and, unless
// RetentionInterval is negative, RunRetention meanwhile. It returns an error wrapping
// ErrRefused when the broker refuses the credentials, the client id or the subscription.
func (c *Consumer) Run(ctx context.Context, handler inbox.Handler) error {
	if handler == nil {
		return errors.New("mqttinbox: nil handler")
	}
	if !c.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer c.running.Store(false)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { _ = c.in.RunRedrive(ctx, handler, c.cfg.RedriveInterval) })
	if c.cfg.RetentionInterval >= 0 {
		wg.Go(func() { _ = c.in.RunRetention(ctx, c.cfg.RetentionInterval) })
	}

	q := newQueue()
	// The connection outlives the loop by two rounds of paho's ack sender: the PUBACKs of the
	// last outcomes wait in its tracker, sent every ackInterval, and closing the connection at
	// once would drop them (their messages then come again in the next session, duplicates).
	connCtx, stopConn := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConn()
	cm, err := autopaho.NewConnection(connCtx, c.clientConfig(ctx, q, cancel))
	if err != nil {
		cancel(nil)
		return fmt.Errorf("mqttinbox: %w", err)
	}
	l := &loop{c: c, q: q, handler: handler, held: map[string]*hold{}, retryAt: map[string]time.Time{}}
	l.run(ctx)
	select {
	case <-time.After(2 * ackInterval):
	case <-cm.Done():
	}
	stopConn()
	<-cm.Done()
	if err := context.Cause(ctx); errors.Is(err, ErrRefused) {
		return err
	}
	return nil
}

// ackInterval is how often paho sends the PUBACKs the loop queued (in arrival order).
const ackInterval = 5 * time.Millisecond

// testHookConnectionUp, when set (by tests), runs at the start of OnConnectionUp: it widens the
// window in which a new connection's messages arrive before the connection is recorded.
var testHookConnectionUp func()

// clientConfig is autopaho's configuration: a persistent session, manual acknowledgement,
// the subscription made on every connection, and fatal CONNACK refusals ending Run.
func (c *Consumer) clientConfig(ctx context.Context, q *queue, fail context.CancelCauseFunc) autopaho.ClientConfig {
	expiry := uint32(c.cfg.SessionExpiry / time.Second)
	recvMax := uint16(c.cfg.ReceiveMaximum)
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{c.broker},
		TlsCfg:                        c.cfg.TLSConfig,
		KeepAlive:                     uint16(c.cfg.KeepAlive / time.Second),
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         expiry,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(100*time.Millisecond, maxReconnectWait, 200*time.Millisecond, 2),
		ConnectTimeout:                c.cfg.ConnectTimeout,
		ConnectUsername:               c.cfg.Username,
		ConnectPassword:               []byte(c.cfg.Password),
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			cp.Properties.ReceiveMaximum = &recvMax
			return cp, nil
		},
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ca *paho.Connack) {
			if testHookConnectionUp != nil {
				testHookConnectionUp()
			}
			gen := q.up(ca.SessionPresent)
			c.log.InfoContext(ctx, "mqttinbox: connected", "session_present", ca.SessionPresent, "connection", gen)
			go c.subscribe(ctx, cm, q, gen, fail)
		},
		OnConnectionDown: func() bool {
			// autopaho calls it once the lost connection's client has stopped (no more
			// arrivals from it) and before it dials again.
			q.down()
			c.log.WarnContext(ctx, "mqttinbox: connection lost; reconnecting")
			return true
		},
		OnConnectError: func(err error) {
			var cerr *autopaho.ConnackError
			if errors.As(err, &cerr) && fatalConnack(cerr.ReasonCode) {
				c.log.ErrorContext(ctx, "mqttinbox: the broker refused the connection", "reason_code", cerr.ReasonCode, "reason", cerr.Reason)
				fail(fmt.Errorf("%w: CONNACK reason code 0x%02X %s", ErrRefused, cerr.ReasonCode, cerr.Reason))
				return
			}
			if ctx.Err() == nil {
				c.log.WarnContext(ctx, "mqttinbox: connecting failed; retrying", "error", err)
			}
		},
		ClientConfig: paho.ClientConfig{
			ClientID:                   c.cfg.ClientID,
			EnableManualAcknowledgment: true,
			SendAcksInterval:           ackInterval,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				q.push(pr.Client, pr.Packet)
				return true, nil
			}},
		},
	}
	return cfg
}

// fatalConnack says whether a CONNACK refusal needs an operator: retrying cannot help.
func fatalConnack(code byte) bool {
	switch code {
	case 0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C: // protocol version, client id, credentials, not authorized, banned, auth method
		return true
	}
	return false
}

// subscribe (re)makes the subscription on connection gen, retrying every second while that
// connection lasts. Subscribing again to a subscription the session has replaces it, which
// loses nothing.
func (c *Consumer) subscribe(ctx context.Context, cm *autopaho.ConnectionManager, q *queue, gen uint64, fail context.CancelCauseFunc) {
	for {
		sctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
		sa, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{
			Topic: c.filter, QoS: 1,
			RetainHandling: 2, // retained copies would only be duplicates: the sink never retains
		}}})
		cancel()
		if sa != nil && len(sa.Reasons) > 0 && sa.Reasons[0] >= 0x80 {
			c.refuseSubscription(ctx, sa.Reasons[0], fail)
			return
		}
		if err == nil || ctx.Err() != nil || q.generation() != gen {
			return
		}
		c.log.WarnContext(ctx, "mqttinbox: subscribing failed; retrying", "filter", c.filter, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (c *Consumer) refuseSubscription(ctx context.Context, code byte, fail context.CancelCauseFunc) {
	c.log.ErrorContext(ctx, "mqttinbox: the broker refused the subscription", "filter", c.filter, "reason_code", code)
	fail(fmt.Errorf("%w: SUBACK reason code 0x%02X for filter %q", ErrRefused, code, c.filter))
}
