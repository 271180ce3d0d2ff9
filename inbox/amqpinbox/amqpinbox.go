package amqpinbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
)

// Defaults of Config.
const (
	DefaultURL            = "amqp://guest:guest@localhost:5672/"
	DefaultPrefetch       = 64
	DefaultErrorDelay     = time.Second
	DefaultReconnectWait  = time.Second
	DefaultConsumerTag    = "outbox-inbox"
	maxReconnectWait      = 30 * time.Second
	defaultConnectTimeout = 10 * time.Second
)

// Config configures a Consumer.
type Config struct {
	// Inbox applies each message once. Required.
	Inbox *inbox.Inbox
	// URL is the AMQP URI, amqp:// or amqps://. Default DefaultURL. Its password is never
	// logged.
	URL string
	// Queue is the queue to consume (the operator's: the adapter does not declare it).
	// Required.
	Queue string
	// RoutingKeyPrefix and RoutingKeys map routing keys back to outbox topics, as the AMQP
	// sink's fields of the same names map topics to routing keys: a routing key that
	// RoutingKeys maps a topic to is that topic, else one that starts with RoutingKeyPrefix
	// is the rest of it, else the routing key is the topic.
	RoutingKeyPrefix string
	RoutingKeys      map[string]string
	// Prefetch is the channel's prefetch count (basic.qos): how many unacknowledged
	// deliveries the broker hands the consumer, among them those held for a retry. Default
	// DefaultPrefetch, and at least Batch.
	Prefetch int
	// Batch is the most deliveries applied in one transaction (DeliverBatch), from what
	// has arrived: the adapter never waits to fill a batch. Default 1.
	Batch int
	// ConsumerTag names the consumer on the broker. Default DefaultConsumerTag.
	ConsumerTag string
	// ErrorDelay is the pause before a delivery is tried again after the inbox itself
	// failed (database unreachable). Default DefaultErrorDelay.
	ErrorDelay time.Duration
	// ReconnectWait is the first pause before reconnecting after the connection or the
	// channel was lost; it doubles up to 30 s. Default DefaultReconnectWait.
	ReconnectWait time.Duration
	// RedriveInterval is how often the inbox's retried dead letters are applied
	// (inbox.RunRedrive). Default 5 s.
	RedriveInterval time.Duration
	// RetentionInterval is how often expired ids are deleted (inbox.RunRetention); negative
	// disables it (another replica runs it). Default one hour.
	RetentionInterval time.Duration
	// Logger receives the adapter's warnings. Default slog.Default().
	Logger *slog.Logger
}

// Validate returns a *outbox.ConfigError naming the first wrong field. It never quotes the
// URL.
func (c Config) Validate() error {
	bad := func(field, reason string) error { return &outbox.ConfigError{Field: field, Reason: reason} }
	if c.Inbox == nil {
		return bad("inbox", "required")
	}
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
			return bad("url", "not an amqp:// or amqps:// URI with a host")
		}
	}
	switch {
	case c.Queue == "":
		return bad("queue", "required")
	case len(c.Queue) > 255:
		return bad("queue", "longer than 255 bytes")
	case c.Prefetch < 0 || c.Prefetch > 65535:
		return bad("prefetch", "must be between 0 and 65535")
	case c.Batch < 0:
		return bad("batch", "must not be negative")
	case c.Prefetch > 0 && c.Prefetch < c.Batch:
		return bad("prefetch", "must be at least batch")
	case c.ErrorDelay < 0:
		return bad("error_delay", "must not be negative")
	case c.ReconnectWait < 0:
		return bad("reconnect_wait", "must not be negative")
	case c.RedriveInterval < 0:
		return bad("redrive_interval", "must not be negative")
	}
	for _, t := range slices.Sorted(maps.Keys(c.RoutingKeys)) {
		if t == "" {
			return bad("routing_keys", "an empty topic is mapped")
		}
	}
	return nil
}

// ErrRunning is returned by Run when the Consumer is running already.
var ErrRunning = errors.New("amqpinbox: consumer already running")

// Consumer consumes a RabbitMQ queue into an inbox: see the package documentation.
type Consumer struct {
	cfg    Config
	in     *inbox.Inbox
	log    *slog.Logger
	topics map[string]string // routing key → topic, from RoutingKeys

	mu      sync.Mutex
	running bool
}

// New validates cfg and returns a Consumer. It does not connect: Run does.
func New(cfg Config) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.URL = cmp.Or(cfg.URL, DefaultURL)
	cfg.Batch = max(cfg.Batch, 1)
	cfg.Prefetch = max(cmp.Or(cfg.Prefetch, DefaultPrefetch), cfg.Batch)
	cfg.ConsumerTag = cmp.Or(cfg.ConsumerTag, DefaultConsumerTag)
	cfg.ErrorDelay = cmp.Or(cfg.ErrorDelay, DefaultErrorDelay)
	cfg.ReconnectWait = cmp.Or(cfg.ReconnectWait, DefaultReconnectWait)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Consumer{cfg: cfg, in: cfg.Inbox, log: cfg.Logger, topics: map[string]string{}}
	for t, k := range cfg.RoutingKeys {
		c.topics[k] = t
	}
	return c, nil
}

// topic maps a routing key back to its outbox topic.
func (c *Consumer) topic(routingKey string) string {
	if t, ok := c.topics[routingKey]; ok {
		return t
	}
	if p := c.cfg.RoutingKeyPrefix; p != "" && strings.HasPrefix(routingKey, p) {
		return routingKey[len(p):]
	}
	return routingKey
}

// Run consumes the queue, applying each delivery with handler, until ctx ends; it returns
// nil then. It reconnects after the connection or channel is lost (logged at WARN, with
// backoff), and runs the inbox's Redrive and (unless disabled) retention. It returns an
// error when the broker refuses the first connection's credentials or virtual host.
func (c *Consumer) Run(ctx context.Context, handler inbox.Handler) error {
	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return ErrRunning
	}
	c.running = true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.running = false
		c.mu.Unlock()
	}()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { _ = c.in.RunRedrive(ctx, handler, c.cfg.RedriveInterval) })
	if c.cfg.RetentionInterval >= 0 {
		wg.Go(func() { _ = c.in.RunRetention(ctx, c.cfg.RetentionInterval) })
	}

	wait := c.cfg.ReconnectWait
	for connected := false; ; {
		consumed, err := c.session(ctx, handler)
		if ctx.Err() != nil {
			return nil
		}
		if consumed {
			connected, wait = true, c.cfg.ReconnectWait
		}
		if !connected && isRefused(err) {
			return fmt.Errorf("amqpinbox: %w", err)
		}
		c.log.WarnContext(ctx, "amqpinbox: connection lost; reconnecting", "queue", c.cfg.Queue, "wait", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(2*wait, maxReconnectWait)
	}
}

// isRefused says the broker refused the connection for good: credentials or virtual host.
func isRefused(err error) bool {
	var ae *amqp091.Error
	return errors.Is(err, amqp091.ErrCredentials) || errors.Is(err, amqp091.ErrSASL) ||
		errors.As(err, &ae) && ae.Code == amqp091.AccessRefused && strings.Contains(ae.Reason, "vhost")
}

// session consumes on one connection until it or its channel is lost (the error says
// why) or ctx ends. consumed says it got as far as consuming.
func (c *Consumer) session(ctx context.Context, h inbox.Handler) (consumed bool, err error) {
	conn, err := amqp091.DialConfig(c.cfg.URL, amqp091.Config{
		Heartbeat:  10 * time.Second,
		Properties: amqp091.Table{"connection_name": c.cfg.ConsumerTag},
		Dial:       amqp091.DefaultDial(defaultConnectTimeout),
	})
	if err != nil {
		return false, fmt.Errorf("connecting: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("opening a channel: %w", err)
	}
	if err := ch.Qos(c.cfg.Prefetch, 0, false); err != nil {
		return false, fmt.Errorf("setting the prefetch: %w", err)
	}
	closed := ch.NotifyClose(make(chan *amqp091.Error, 1))
	ds, err := ch.ConsumeWithContext(ctx, c.cfg.Queue, c.cfg.ConsumerTag, false, false, false, false, nil)
	if err != nil {
		return false, fmt.Errorf("consuming queue %q: %w", c.cfg.Queue, err)
	}
	s := &session{c: c, h: h}
	err = s.loop(ctx, ds, closed)
	return true, err
}
