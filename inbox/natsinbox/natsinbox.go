package natsinbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/internal/keyorder"
)

// Defaults of Config.
const (
	DefaultURL             = natsgo.DefaultURL
	DefaultAckWait         = 30 * time.Second
	DefaultRedriveInterval = 5 * time.Second
	DefaultReconnectWait   = 500 * time.Millisecond
)

// Config configures an Adapter.
type Config struct {
	// Inbox applies the messages. Required.
	Inbox *inbox.Inbox
	// URL is the server address, or several separated by commas. Default DefaultURL.
	// Mutually exclusive with Conn. Credentials in it are never logged.
	URL string
	// Conn is an existing connection to consume on; the adapter does not close it. Create it
	// with nats.MaxReconnects(-1) so that an outage does not close it for good.
	Conn *natsgo.Conn
	// Name is the client connection name shown by the server. Default "outbox-inbox".
	Name string
	// Stream is the JetStream stream to consume. Required.
	Stream string
	// Durable names the durable pull consumer the adapter creates (or updates) on Stream.
	// Default: the inbox's consumer name, which must then be a valid consumer name.
	Durable string
	// SubjectPrefix is the sink's SubjectPrefix: the topic is the subject without it.
	// Messages whose subject lacks it are rejected (dead-lettered).
	SubjectPrefix string
	// FilterSubjects restricts the consumer to these subjects (wildcards allowed). Default:
	// SubjectPrefix + ">" when SubjectPrefix is set, else the whole stream.
	FilterSubjects []string
	// AckWait is how long JetStream waits for an ack before redelivering. The adapter
	// signals progress (InProgress) every AckWait/3 for the messages it holds, so a long
	// handler does not get its message redelivered. Default DefaultAckWait.
	AckWait time.Duration
	// MaxDeliver is JetStream's delivery limit for a message. It must exceed the inbox's
	// MaxAttempts (the inbox dead-letters a message on delivery MaxAttempts+1; a broker that
	// gives up first would strand it without a dead letter), or be -1 (unlimited, the
	// default when 0).
	MaxDeliver int
	// MaxAckPending is the consumer's limit of unacknowledged messages (server default when
	// 0). Messages held behind a retry count toward it.
	MaxAckPending int
	// Batch is the number of messages per transaction: 1 (default) runs Deliver per message,
	// more runs DeliverBatch over the messages that have arrived, up to Batch, without
	// waiting to fill a batch.
	Batch int
	// Logger receives warnings (reconnects, rejected messages, inbox errors). Default
	// slog.Default().
	Logger *slog.Logger
	// RedriveInterval is how often the inbox's retried dead letters are redriven. Default
	// DefaultRedriveInterval.
	RedriveInterval time.Duration
	// RetentionInterval is how often expired ids are deleted (inbox.RunRetention); negative
	// disables it (another process runs it). Default one hour.
	RetentionInterval time.Duration
	// ReconnectWait is the pause between reconnect attempts of a connection the adapter
	// makes. Default DefaultReconnectWait.
	ReconnectWait time.Duration
}

func (c Config) withDefaults() Config {
	c.Name = cmp.Or(c.Name, "outbox-inbox")
	if c.URL == "" && c.Conn == nil {
		c.URL = DefaultURL
	}
	if c.Durable == "" && c.Inbox != nil {
		c.Durable = c.Inbox.Consumer()
	}
	if len(c.FilterSubjects) == 0 && c.SubjectPrefix != "" {
		c.FilterSubjects = []string{c.SubjectPrefix + ">"}
	}
	c.AckWait = cmp.Or(c.AckWait, DefaultAckWait)
	c.MaxDeliver = cmp.Or(c.MaxDeliver, -1)
	c.Batch = cmp.Or(c.Batch, 1)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.RedriveInterval = cmp.Or(c.RedriveInterval, DefaultRedriveInterval)
	c.ReconnectWait = cmp.Or(c.ReconnectWait, DefaultReconnectWait)
	return c
}

// Validate reports the first invalid setting of c, with defaults applied, as an
// *outbox.ConfigError naming the field in snake_case. It never quotes the URL.
func (c Config) Validate() error {
	c = c.withDefaults()
	bad := func(field, reason string) error { return &outbox.ConfigError{Field: field, Reason: reason} }
	switch {
	case c.Inbox == nil:
		return bad("inbox", "required")
	case c.URL != "" && c.Conn != nil:
		return bad("url", "set either url or conn, not both")
	case c.Stream == "":
		return bad("stream", "required")
	case !validName(c.Stream):
		return bad("stream", "must not contain whitespace, '.', '*', '>', '/' or '\\'")
	case !validName(c.Durable):
		return bad("durable", fmt.Sprintf("%q must not contain whitespace, '.', '*', '>', '/' or '\\' (set Durable when the inbox's consumer name is not a valid consumer name)", c.Durable))
	case c.AckWait < 0:
		return bad("ack_wait", "must not be negative")
	case c.MaxDeliver != -1 && c.MaxDeliver <= c.Inbox.MaxAttempts():
		return bad("max_deliver", fmt.Sprintf("must exceed the inbox's max attempts (%d), or be -1: JetStream must not give up on a message before the inbox dead-letters it", c.Inbox.MaxAttempts()))
	case c.MaxAckPending < 0:
		return bad("max_ack_pending", "must not be negative")
	case c.Batch < 1:
		return bad("batch", "must be at least 1")
	case c.RedriveInterval < 0:
		return bad("redrive_interval", "must not be negative")
	case c.ReconnectWait < 0:
		return bad("reconnect_wait", "must not be negative")
	}
	if c.URL != "" {
		for i, u := range strings.Split(c.URL, ",") {
			u = strings.TrimSpace(u)
			if !strings.Contains(u, "://") {
				u = "nats://" + u
			}
			p, err := url.Parse(u)
			if err != nil || p.Hostname() == "" {
				return bad("url", fmt.Sprintf("server %d is not a valid URL", i+1))
			}
		}
	}
	for _, s := range c.FilterSubjects {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return bad("filter_subjects", fmt.Sprintf("%q is not a subject", s))
		}
	}
	return nil
}

func validName(s string) bool {
	return s != "" && len(s) <= 255 && !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune(".*>/\\", r)
	})
}

// ErrAuth is wrapped by Run's error when the server refuses the credentials at start.
var ErrAuth = errors.New("natsinbox: authentication failed")

// Adapter consumes a JetStream stream into an inbox.
type Adapter struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg and returns an Adapter. It does not connect: Run does.
func New(cfg Config) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Adapter{cfg: cfg, log: cfg.Logger}, nil
}

// Run consumes until ctx ends, then returns nil; it returns an error only for what cannot
// recover: credentials refused when it first connects (ErrAuth). While NATS is unreachable
// at start it keeps trying, as it does through later outages. It reconnects through outages, and runs the
// inbox's Redrive and, unless disabled, its retention in goroutines of its own.
func (a *Adapter) Run(ctx context.Context, handler inbox.Handler) error {
	return a.run(ctx, handler, nil)
}

// RunBulk is Run with a handler that applies a batch's new messages in one call
// (inbox.DeliverBulk): with Config.Batch above 1, the fastest way through the inbox. A
// message alone (or redone alone after its batch failed) is handed over alone.
func (a *Adapter) RunBulk(ctx context.Context, handler inbox.BulkHandler) error {
	return a.run(ctx, keyorder.One(handler), handler)
}

func (a *Adapter) run(ctx context.Context, handler inbox.Handler, bulk inbox.BulkHandler) error {
	nc := a.cfg.Conn
	if nc == nil {
		for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
			var err error
			nc, err = a.connect()
			if err == nil {
				break
			}
			if errors.Is(err, ErrAuth) {
				return err
			}
			a.log.WarnContext(ctx, "natsinbox: cannot connect; retrying", "in", backoff, "error", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
		}
		defer nc.Close()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("natsinbox: %w", err)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := a.cfg.Inbox
	wg.Go(func() { _ = in.RunRedrive(ctx, handler, a.cfg.RedriveInterval) })
	if a.cfg.RetentionInterval >= 0 {
		wg.Go(func() { _ = in.RunRetention(ctx, a.cfg.RetentionInterval) })
	}

	c := &consumer{a: a, js: js, hb: newHeartbeats()}
	c.seq = keyorder.New[jetstream.Msg](in, handler, c, a.cfg.Batch, a.cfg.AckWait+5*time.Second, a.log)
	if bulk != nil {
		c.seq = keyorder.NewBulk[jetstream.Msg](in, bulk, c, a.cfg.Batch, a.cfg.AckWait+5*time.Second, a.log)
	}
	wg.Go(func() { c.hb.run(ctx, a.cfg.AckWait/3, a.log) })
	backoff := time.Second
	for {
		err := c.consume(ctx)
		if ctx.Err() != nil {
			c.shutdown()
			if err := nc.FlushTimeout(2 * time.Second); err != nil {
				a.log.Warn("natsinbox: flushing naks at shutdown", "error", err)
			}
			return nil
		}
		a.log.WarnContext(ctx, "natsinbox: consuming stopped; retrying", "stream", a.cfg.Stream, "durable", a.cfg.Durable,
			"in", backoff, "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
		if err == nil {
			backoff = time.Second
		}
	}
}

func (a *Adapter) connect() (*natsgo.Conn, error) {
	log := a.log
	nc, err := natsgo.Connect(a.cfg.URL,
		natsgo.Name(a.cfg.Name),
		natsgo.MaxReconnects(-1),
		natsgo.IgnoreAuthErrorAbort(),
		natsgo.ReconnectWait(a.cfg.ReconnectWait),
		natsgo.DisconnectErrHandler(func(_ *natsgo.Conn, err error) {
			if err != nil {
				log.Warn("natsinbox: disconnected", "error", err)
			}
		}),
		natsgo.ReconnectHandler(func(*natsgo.Conn) { log.Info("natsinbox: reconnected") }),
		natsgo.ErrorHandler(func(_ *natsgo.Conn, _ *natsgo.Subscription, err error) {
			log.Warn("natsinbox: connection error", "error", err)
		}),
	)
	if err != nil {
		if errors.Is(err, natsgo.ErrAuthorization) || errors.Is(err, natsgo.ErrAuthExpired) {
			return nil, fmt.Errorf("%w: %w", ErrAuth, err)
		}
		return nil, fmt.Errorf("natsinbox: connecting: %w", err)
	}
	return nc, nil
}
