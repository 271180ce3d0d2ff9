package redisinbox

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/internal/keyorder"
)

// Defaults of Config.
const (
	DefaultAddr            = "127.0.0.1:6379"
	DefaultClaimMinIdle    = time.Minute
	DefaultBlock           = time.Second
	DefaultRedriveInterval = 5 * time.Second
)

// Config configures an Adapter.
type Config struct {
	// Inbox applies the messages. Required.
	Inbox *inbox.Inbox
	// Addr, Username, Password, DB and TLS reach Redis as the redis sink's fields do.
	// Default Addr DefaultAddr. The password is never logged nor put in errors. Mutually
	// exclusive with Client.
	Addr      string
	Username  string
	Password  string
	DB        int
	TLS       bool
	TLSConfig *tls.Config
	// Client is an existing client; the adapter does not close it.
	Client goredis.UniversalClient
	// Topics are the outbox topics to consume. Required. Their stream keys are as the sink
	// makes them: Streams[topic] when set, else StreamPrefix + topic.
	Topics       []string
	StreamPrefix string
	Streams      map[string]string
	// Group is the consumer group (created with XGROUP CREATE ... 0 MKSTREAM when absent,
	// so a new group reads each stream from its start). Default: the inbox's consumer name.
	Group string
	// Consumer names this process in the group; keep it stable across restarts, so that a
	// restarted process takes its own pending entries back at once. Default: the host name
	// and the process id.
	Consumer string
	// ClaimMinIdle is how long an entry stays pending, unacknowledged, with another
	// consumer of the group (one that died, say) before this one claims it (XAUTOCLAIM).
	// It must exceed the longest time a handler runs, or live consumers' entries get claimed
	// and run twice at once (the inbox still applies them once). Default
	// DefaultClaimMinIdle.
	ClaimMinIdle time.Duration
	// Block is how long one XREADGROUP waits for new entries. Default DefaultBlock.
	Block time.Duration
	// Batch is the number of messages per transaction: 1 (default) runs Deliver per message,
	// more runs DeliverBatch over the entries read, up to Batch, without waiting to fill it.
	Batch int
	// Logger receives warnings (outages, rejected messages, inbox errors). Default
	// slog.Default().
	Logger *slog.Logger
	// RedriveInterval is how often the inbox's retried dead letters are redriven. Default
	// DefaultRedriveInterval.
	RedriveInterval time.Duration
	// RetentionInterval is how often expired ids are deleted (inbox.RunRetention); negative
	// disables it. Default one hour.
	RetentionInterval time.Duration
}

func (c Config) withDefaults() Config {
	if c.Client == nil {
		c.Addr = cmp.Or(c.Addr, DefaultAddr)
	}
	if c.Group == "" && c.Inbox != nil {
		c.Group = c.Inbox.Consumer()
	}
	if c.Consumer == "" {
		host, _ := os.Hostname()
		c.Consumer = cmp.Or(host, "consumer") + "-" + strconv.Itoa(os.Getpid())
	}
	c.ClaimMinIdle = cmp.Or(c.ClaimMinIdle, DefaultClaimMinIdle)
	c.Block = cmp.Or(c.Block, DefaultBlock)
	c.Batch = cmp.Or(c.Batch, 1)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.RedriveInterval = cmp.Or(c.RedriveInterval, DefaultRedriveInterval)
	return c
}

// Validate reports the first invalid setting of c, with defaults applied, as an
// *outbox.ConfigError naming the field in snake_case. It never quotes the password.
func (c Config) Validate() error {
	c = c.withDefaults()
	bad := func(field, reason string) error { return &outbox.ConfigError{Field: field, Reason: reason} }
	if c.Inbox == nil {
		return bad("inbox", "required")
	}
	if c.Client != nil && (c.Addr != "" || c.Username != "" || c.Password != "" || c.DB != 0 || c.TLS || c.TLSConfig != nil) {
		return bad("client", "set either client or the connection settings, not both")
	}
	if c.Client == nil && !strings.Contains(c.Addr, ":") {
		return bad("addr", "must be host:port")
	}
	if c.DB < 0 {
		return bad("db", "must not be negative")
	}
	if len(c.Topics) == 0 {
		return bad("topics", "required")
	}
	seen := map[string]string{}
	for _, t := range c.Topics {
		if t == "" {
			return bad("topics", "empty topic")
		}
		k := streamKey(c, t)
		if o, dup := seen[k]; dup {
			return bad("topics", fmt.Sprintf("topics %q and %q map to the same stream %q", o, t, k))
		}
		seen[k] = t
	}
	for _, t := range slices.Sorted(maps.Keys(c.Streams)) {
		if c.Streams[t] == "" {
			return bad("streams", fmt.Sprintf("topic %q: empty stream key", t))
		}
	}
	switch {
	case c.Group == "":
		return bad("group", "required")
	case c.ClaimMinIdle < 0:
		return bad("claim_min_idle", "must not be negative")
	case c.Block < 0:
		return bad("block", "must not be negative")
	case c.Batch < 1:
		return bad("batch", "must be at least 1")
	case c.RedriveInterval < 0:
		return bad("redrive_interval", "must not be negative")
	}
	return nil
}

func streamKey(c Config, topic string) string {
	if k, ok := c.Streams[topic]; ok {
		return k
	}
	return c.StreamPrefix + topic
}

// ErrAuth is wrapped by Run's error when Redis refuses the credentials at start.
var ErrAuth = errors.New("redisinbox: authentication failed")

// Adapter consumes Redis streams into an inbox through a consumer group.
type Adapter struct {
	cfg    Config
	log    *slog.Logger
	topics map[string]string // stream key -> topic
	keys   []string          // stream keys, in Config.Topics order
}

// New validates cfg and returns an Adapter. It does not connect: Run does.
func New(cfg Config) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	a := &Adapter{cfg: cfg, log: cfg.Logger, topics: make(map[string]string)}
	for _, t := range cfg.Topics {
		k := streamKey(cfg, t)
		a.topics[k] = t
		a.keys = append(a.keys, k)
	}
	return a, nil
}

// Run consumes until ctx ends, then returns nil; it returns an error only when Redis
// refuses the credentials the first time it answers (ErrAuth). It keeps trying through
// outages, and runs the inbox's Redrive and, unless disabled, its retention in goroutines
// of its own.
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
	client := a.cfg.Client
	if client == nil {
		opts := &goredis.Options{Addr: a.cfg.Addr, Username: a.cfg.Username, Password: a.cfg.Password, DB: a.cfg.DB,
			TLSConfig: a.cfg.TLSConfig, ContextTimeoutEnabled: true}
		if a.cfg.TLS && opts.TLSConfig == nil {
			opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c := goredis.NewClient(opts)
		defer func() { _ = c.Close() }()
		client = c
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
	c := &consumer{a: a, rdb: client, known: make(map[string]bool), sched: make(map[string]*scheduled)}
	c.seq = keyorder.New[entry](in, handler, c, a.cfg.Batch, time.Minute, a.log)
	if bulk != nil {
		c.seq = keyorder.NewBulk[entry](in, bulk, c, a.cfg.Batch, time.Minute, a.log)
	}
	err := c.run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// isAuthErr reports a refusal of the credentials.
func isAuthErr(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "NOAUTH") || strings.HasPrefix(s, "WRONGPASS") || strings.Contains(s, "invalid username-password")
}
