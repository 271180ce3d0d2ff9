package redis

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/hostport"
	"github.com/outboxgo/outbox/sink"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultAddr           = "127.0.0.1:6379"
	DefaultSource         = "outbox"
	DefaultPublishTimeout = 5 * time.Second
)

// ErrClosed is returned for every message published after Close.
var ErrClosed = errors.New("redis sink: closed")

// Config configures a Sink. The zero value appends to streams named after the topics on
// 127.0.0.1:6379, database 0.
type Config struct {
	// Addr is the server's host:port. Default DefaultAddr. Mutually exclusive with Client.
	Addr string
	// Username and Password authenticate with AUTH (Username only for Redis 6 ACL users).
	// The password is never logged nor put in errors.
	Username string
	Password string
	// DB is the database number. Default 0.
	DB int
	// TLS connects with TLS, verifying the server's certificate against the system roots.
	// TLSConfig, when set, is used instead (and implies TLS).
	TLS       bool
	TLSConfig *tls.Config
	// Client is an existing client (*redis.Client, *redis.ClusterClient, *redis.Ring...) to
	// publish with. The sink does not close it. Mutually exclusive with Addr, Username,
	// Password, DB, TLS and TLSConfig.
	Client goredis.UniversalClient

	// Source is the CloudEvents source attribute: the name of the producing service.
	// Default DefaultSource.
	Source string
	// StreamPrefix is put before every topic: stream key = StreamPrefix + topic.
	StreamPrefix string
	// Streams maps topics to stream keys exactly, ignoring StreamPrefix; topics not in it
	// use StreamPrefix + topic.
	Streams map[string]string
	// MaxLen, when positive, caps every stream written to at about this many entries
	// (XADD MAXLEN): older entries are trimmed as new ones are added.
	MaxLen int64
	// Approximate trims with MAXLEN ~ instead of MAXLEN =: Redis then removes only whole
	// internal nodes, so a stream may hold somewhat more than MaxLen entries, which is much
	// cheaper. Requires MaxLen.
	Approximate bool
	// PublishTimeout bounds one Publish call: messages not acknowledged by Redis by then fail
	// with a retryable error. Default DefaultPublishTimeout.
	PublishTimeout time.Duration
	// Logger receives connection warnings. Default slog.Default().
	Logger *slog.Logger
}

// Validate reports the first invalid setting of c as an *outbox.ConfigError naming the field
// in snake_case (addr, max_len, streams, ...), without quoting the password. New returns the
// same errors; Validate lets a configuration be checked before anything connects. Zero values
// are valid: New replaces them by their defaults.
func (c Config) Validate() error {
	if c.Client != nil {
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"addr", c.Addr != ""}, {"username", c.Username != ""}, {"password", c.Password != ""},
			{"db", c.DB != 0}, {"tls", c.TLS}, {"tls_config", c.TLSConfig != nil},
		} {
			if f.set {
				return &outbox.ConfigError{Field: f.name, Reason: "set either client or the connection settings, not both"}
			}
		}
	}
	if c.Addr != "" {
		if reason := hostport.Check(c.Addr, "the address", false); reason != "" {
			return &outbox.ConfigError{Field: "addr", Reason: reason}
		}
	}
	if c.DB < 0 {
		return &outbox.ConfigError{Field: "db", Reason: "must not be negative"}
	}
	if c.MaxLen < 0 {
		return &outbox.ConfigError{Field: "max_len", Reason: "must not be negative"}
	}
	if c.Approximate && c.MaxLen == 0 {
		return &outbox.ConfigError{Field: "approximate", Reason: "requires max_len"}
	}
	if c.PublishTimeout < 0 {
		return &outbox.ConfigError{Field: "publish_timeout", Reason: "must not be negative"}
	}
	if hasControl(c.Source) {
		return &outbox.ConfigError{Field: "source", Reason: "contains a control character"}
	}
	if hasControl(c.StreamPrefix) {
		return &outbox.ConfigError{Field: "stream_prefix", Reason: "contains a control character"}
	}
	for _, topic := range slices.Sorted(maps.Keys(c.Streams)) { // the same error every time
		key := c.Streams[topic]
		if topic == "" {
			return &outbox.ConfigError{Field: "streams", Reason: "empty topic"}
		}
		if key == "" {
			return &outbox.ConfigError{Field: "streams", Reason: fmt.Sprintf("topic %q: empty stream key", topic)}
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

// Sink appends outbox messages to Redis streams. It is safe for concurrent use.
type Sink struct {
	client    goredis.UniversalClient
	ownClient bool

	source  string
	prefix  string
	streams map[string]string
	maxLen  int64
	approx  bool
	timeout time.Duration
	log     *slog.Logger

	// Pipelines whose Publish gave up (its context ended) finish in the background; Close
	// waits for them so that no goroutine outlives the sink.
	background sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
	mu        sync.RWMutex // guards isClosed against Publish
	isClosed  bool
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg and creates the sink. It does not need Redis to be up: a client the sink
// makes connects on first use, so while Redis is unreachable publishes fail with
// sink.Unavailable errors, and they succeed once it is back. New checks the connection
// (within ctx, at most a second): it logs a warning when Redis cannot be reached yet, and
// returns an error wrapping ErrAuth when Redis refuses the credentials.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Sink{
		client:  cfg.Client,
		source:  cmp.Or(cfg.Source, DefaultSource),
		prefix:  cfg.StreamPrefix,
		maxLen:  cfg.MaxLen,
		approx:  cfg.Approximate,
		timeout: cmp.Or(cfg.PublishTimeout, DefaultPublishTimeout),
		log:     cmp.Or(cfg.Logger, slog.Default()),
	}
	if len(cfg.Streams) > 0 {
		s.streams = make(map[string]string, len(cfg.Streams))
		for topic, key := range cfg.Streams {
			s.streams[topic] = key
		}
	}
	if s.client == nil {
		tlsConf := cfg.TLSConfig
		if tlsConf == nil && cfg.TLS {
			tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
		} else if tlsConf != nil {
			tlsConf = tlsConf.Clone()
		}
		s.ownClient = true
		s.client = goredis.NewClient(&goredis.Options{
			Addr:      cmp.Or(cfg.Addr, DefaultAddr),
			Username:  cfg.Username,
			Password:  cfg.Password,
			DB:        cfg.DB,
			TLSConfig: tlsConf,
			// Network reads and writes end with the Publish context's deadline (the
			// publish timeout), not only with the client's own timeouts.
			ContextTimeoutEnabled: true,
			// Fail fast while Redis is unreachable: the relay retries with its own backoff.
			// One quick retry still covers a pooled connection that died with a restart.
			MaxRetries:      1,
			MaxRetryBackoff: 100 * time.Millisecond,
			DialerRetries:   1,
		})
		pingCtx, cancel := context.WithTimeout(ctx, time.Second)
		err := s.client.Ping(pingCtx).Err()
		cancel()
		if isAuthErr(err) {
			_ = s.client.Close()
			return nil, fmt.Errorf("%w by %s: %w (check the username and password)", ErrAuth, cmp.Or(cfg.Addr, DefaultAddr), err)
		}
		if err != nil {
			s.log.Warn("redis sink: cannot reach Redis yet; publishes fail as unavailable until it can",
				"addr", cmp.Or(cfg.Addr, DefaultAddr), "error", err)
		}
	}
	return s, nil
}

// Client returns the client the sink publishes with.
func (s *Sink) Client() goredis.UniversalClient { return s.client }

// Close waits for running Publish calls and pipelines still finishing in the background,
// then closes a client the sink made; one passed in Config.Client is left open. Close is
// idempotent.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.isClosed = true
		s.mu.Unlock()
		s.background.Wait()
		if s.ownClient {
			if err := s.client.Close(); err != nil && !errors.Is(err, goredis.ErrClosed) {
				s.closeErr = fmt.Errorf("redis sink: closing client: %w", err)
			}
		}
	})
	return s.closeErr
}

// streamKey returns the stream a topic's messages are appended to.
func (s *Sink) streamKey(topic string) string {
	if key, ok := s.streams[topic]; ok {
		return key
	}
	if s.prefix == "" {
		return topic
	}
	return s.prefix + topic
}
