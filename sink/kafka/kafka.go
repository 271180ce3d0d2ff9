package kafka

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/hostport"
	"github.com/outboxgo/outbox/sink"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultClientID           = "outbox-relay"
	DefaultSource             = "outbox"
	DefaultProduceTimeout     = 10 * time.Second
	DefaultMaxBufferedRecords = 50_000
	// DefaultMaxMessageBytes is Kafka's default max.message.bytes for a topic.
	DefaultMaxMessageBytes = 1_000_012
	DefaultCompression     = "snappy"
)

// SASL mechanisms accepted in Config.SASLMechanism.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// ErrClosed is returned (retryably) for every message published after Close.
var ErrClosed = errors.New("kafka sink: closed")

// Config configures a Sink. Brokers is required; every other field has a working zero value.
type Config struct {
	// Brokers are the seed brokers, "host:port" (port 9092 when omitted). Required.
	Brokers []string
	// ClientID is the client id the brokers see (logs, quotas). Default DefaultClientID.
	ClientID string
	// Source is the CloudEvents source attribute: the name of the producing service.
	// Default DefaultSource.
	Source string

	// TopicPrefix is put before every outbox topic: Kafka topic = TopicPrefix + topic.
	TopicPrefix string
	// Topics maps outbox topics to Kafka topics exactly; a mapped topic takes no prefix.
	// Topics not in the map use TopicPrefix.
	Topics map[string]string
	// AutoCreateTopics asks the brokers to create a missing topic when the client first
	// looks it up (they do so only with auto.create.topics.enable, using their default
	// partition count and replication). Off by default: a missing topic fails retryably.
	AutoCreateTopics bool

	// TLS, when set, is the TLS configuration to dial the brokers with. Mutually exclusive
	// with the TLS* file fields.
	TLS *tls.Config
	// TLSEnabled dials the brokers with TLS, verifying them against the system roots
	// unless TLSCAFile is set. Setting any other TLS* field implies it.
	TLSEnabled bool
	// TLSCAFile is a PEM file of CA certificates to verify the brokers with.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a PEM client certificate and key, for mutual TLS.
	TLSCertFile string
	TLSKeyFile  string
	// TLSInsecureSkipVerify skips verifying the brokers' certificates. For tests only.
	TLSInsecureSkipVerify bool

	// SASLMechanism is "PLAIN", "SCRAM-SHA-256" or "SCRAM-SHA-512"; empty for none.
	SASLMechanism string
	// SASLUser and SASLPassword are the SASL credentials. The password is never logged.
	SASLUser     string
	SASLPassword string

	// ProduceTimeout bounds one Publish call: messages the brokers have not acknowledged
	// by then fail with a retryable error. Default DefaultProduceTimeout.
	ProduceTimeout time.Duration
	// MaxBufferedRecords is the most records the client holds, sent or not, before
	// Publish waits for acknowledgements. Default DefaultMaxBufferedRecords.
	MaxBufferedRecords int
	// MaxMessageBytes is the largest record batch the client builds, before compression;
	// it must not exceed the topics' max.message.bytes. A message that does not fit
	// alone fails permanently. Default DefaultMaxMessageBytes.
	MaxMessageBytes int
	// Linger is how long a partition waits for more records before sending a batch.
	// Default 0: send at once, batching whatever accumulates while requests are in
	// flight (up to five per broker).
	Linger time.Duration
	// Compression is "none", "gzip", "snappy", "lz4" or "zstd". Default DefaultCompression.
	Compression string

	// Logger receives client events (connection trouble, producer resets). Default
	// slog.Default().
	Logger *slog.Logger
}

// metadataMinAge is the least time between two metadata refreshes.
const metadataMinAge = 500 * time.Millisecond

// maxKafkaClientID is franz-go's limit on the client id.
const maxKafkaClientID = 256

// Validate reports the first invalid setting of c as an *outbox.ConfigError naming the field
// in snake_case (brokers, topic_prefix, sasl_user, ...), without quoting a password. New
// returns the same errors; Validate lets a configuration be checked before anything
// connects. Zero values are valid: New replaces them by their defaults. The files the TLS*
// fields name are read by New only.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return &outbox.ConfigError{Field: "brokers", Reason: "required: at least one host:port"}
	}
	for i, b := range c.Brokers {
		if reason := hostport.Check(b, "a broker address", true); reason != "" {
			return &outbox.ConfigError{Field: "brokers", Reason: fmt.Sprintf("broker %d: %s", i+1, reason)}
		}
	}
	if len(c.ClientID) > maxKafkaClientID {
		return &outbox.ConfigError{Field: "client_id", Reason: fmt.Sprintf("longer than %d bytes", maxKafkaClientID)}
	}
	if hasControl(c.ClientID) {
		return &outbox.ConfigError{Field: "client_id", Reason: "contains a control character"}
	}
	if hasControl(c.Source) {
		return &outbox.ConfigError{Field: "source", Reason: "contains a control character"}
	}
	if c.TopicPrefix != "" {
		// A prefix is valid when some topic can follow it: check it with one.
		if reason := checkTopic(c.TopicPrefix + "x"); reason != "" {
			return &outbox.ConfigError{Field: "topic_prefix", Reason: reason}
		}
	}
	for _, from := range slices.Sorted(maps.Keys(c.Topics)) { // the same error every time
		to := c.Topics[from]
		if from == "" {
			return &outbox.ConfigError{Field: "topics", Reason: "an empty outbox topic is mapped"}
		}
		if reason := checkTopic(to); reason != "" {
			return &outbox.ConfigError{Field: "topics", Reason: fmt.Sprintf("topic %q maps to %q: %s", from, to, reason)}
		}
	}
	if c.TLS != nil && (c.TLSCAFile != "" || c.TLSCertFile != "" || c.TLSKeyFile != "" || c.TLSInsecureSkipVerify) {
		return &outbox.ConfigError{Field: "tls", Reason: "set either tls or the tls_* fields, not both"}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		field := "tls_key_file"
		if c.TLSCertFile == "" {
			field = "tls_cert_file"
		}
		return &outbox.ConfigError{Field: field, Reason: "tls_cert_file and tls_key_file go together"}
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "":
		if c.SASLUser != "" || c.SASLPassword != "" {
			return &outbox.ConfigError{Field: "sasl_mechanism", Reason: "required when sasl_user or sasl_password is set (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"}
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.SASLUser == "" {
			return &outbox.ConfigError{Field: "sasl_user", Reason: "required with sasl_mechanism"}
		}
		if c.SASLPassword == "" {
			return &outbox.ConfigError{Field: "sasl_password", Reason: "required with sasl_mechanism"}
		}
	default:
		return &outbox.ConfigError{Field: "sasl_mechanism", Reason: fmt.Sprintf("%q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", c.SASLMechanism)}
	}
	if c.ProduceTimeout < 0 {
		return &outbox.ConfigError{Field: "produce_timeout", Reason: "must not be negative"}
	}
	if c.MaxBufferedRecords < 0 {
		return &outbox.ConfigError{Field: "max_buffered_records", Reason: "must not be negative"}
	}
	if c.MaxMessageBytes != 0 && (c.MaxMessageBytes < minMessageBytes || c.MaxMessageBytes > maxMessageBytes) {
		return &outbox.ConfigError{Field: "max_message_bytes", Reason: fmt.Sprintf("must be between %d and %d", minMessageBytes, maxMessageBytes)}
	}
	if c.Linger < 0 {
		return &outbox.ConfigError{Field: "linger", Reason: "must not be negative"}
	}
	if _, ok := codecs[strings.ToLower(c.Compression)]; !ok {
		return &outbox.ConfigError{Field: "compression", Reason: fmt.Sprintf("%q is not one of none, gzip, snappy, lz4, zstd", c.Compression)}
	}
	return nil
}

// franz-go's bounds on the record batch size.
const (
	minMessageBytes = 512
	maxMessageBytes = 1 << 30
)

var codecs = map[string]func() kgo.CompressionCodec{
	"":       kgo.SnappyCompression,
	"none":   kgo.NoCompression,
	"gzip":   kgo.GzipCompression,
	"snappy": kgo.SnappyCompression,
	"lz4":    kgo.Lz4Compression,
	"zstd":   kgo.ZstdCompression,
}

// compression is the codec preference for name: the codec, then none for brokers that
// do not support it.
func compression(name string) []kgo.CompressionCodec {
	codec := codecs[strings.ToLower(name)]()
	if codec == kgo.NoCompression() {
		return []kgo.CompressionCodec{codec}
	}
	return []kgo.CompressionCodec{codec, kgo.NoCompression()}
}

func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// tlsConfig builds the TLS configuration from the file fields, or returns nil for none.
func (c *Config) tlsConfig() (*tls.Config, error) {
	if c.TLS != nil {
		return c.TLS.Clone(), nil
	}
	if !c.TLSEnabled && c.TLSCAFile == "" && c.TLSCertFile == "" && !c.TLSInsecureSkipVerify {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.TLSInsecureSkipVerify} //nolint:gosec // opt-in, documented as for tests
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, &outbox.ConfigError{Field: "tls_ca_file", Reason: err.Error()}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &outbox.ConfigError{Field: "tls_ca_file", Reason: fmt.Sprintf("%s holds no PEM certificate", c.TLSCAFile)}
		}
		tc.RootCAs = pool
	}
	if c.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, &outbox.ConfigError{Field: "tls_cert_file", Reason: err.Error()}
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// saslMechanism returns the configured mechanism, or nil for none.
func (c *Config) saslMechanism() sasl.Mechanism {
	switch strings.ToUpper(c.SASLMechanism) {
	case SASLPlain:
		return plain.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsMechanism()
	case SASLScramSHA256:
		return scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha256Mechanism()
	case SASLScramSHA512:
		return scram.Auth{User: c.SASLUser, Pass: c.SASLPassword}.AsSha512Mechanism()
	}
	return nil
}

// Sink publishes to Kafka with an idempotent producer and acks=all. It is safe for
// concurrent use.
type Sink struct {
	opts     []kgo.Opt
	sourceB  []byte // Config.Source as header value, shared by every record
	timeout  time.Duration
	maxBytes int
	log      *slog.Logger
	topics   topicCache
	conns    *connState

	// mu guards cl and isClosed. Publish holds the read lock for its whole call, so that
	// Close and a client reset wait for running calls.
	mu       sync.RWMutex
	cl       *kgo.Client
	isClosed bool

	// probe publishes single records, one at a time, to tell which record of a batch the
	// broker rejected (see isolate). Made on first use.
	probeMu sync.Mutex
	probe   *kgo.Client

	closeOnce sync.Once
}

var _ sink.Sink = (*Sink)(nil)

// New validates cfg, creates the Kafka client and checks that a broker answers (within ctx
// and the produce timeout, at most 5s). When a broker refuses the SASL credentials, New
// returns an error wrapping ErrAuth. When the brokers are unreachable, New logs a warning
// and returns a working sink: publishes fail with sink.Unavailable errors until they are
// back.
func New(ctx context.Context, cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	s := &Sink{
		sourceB:  []byte(cmp.Or(cfg.Source, DefaultSource)),
		timeout:  cmp.Or(cfg.ProduceTimeout, DefaultProduceTimeout),
		maxBytes: cmp.Or(cfg.MaxMessageBytes, DefaultMaxMessageBytes),
		log:      cmp.Or(cfg.Logger, slog.Default()).With(slog.String("sink", "kafka")),
	}
	s.conns = &connState{log: s.log}
	s.topics = topicCache{prefix: cfg.TopicPrefix, exact: make(map[string]string, len(cfg.Topics))}
	for from, to := range cfg.Topics {
		s.topics.exact[from] = to
	}

	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		kgo.ClientID(cmp.Or(cfg.ClientID, DefaultClientID)),
		// Durability: the leader answers once every in-sync replica has the batch. The
		// idempotent producer (franz-go's default, never disabled here) dedupes its own
		// retries and keeps per-partition order with up to five requests in flight per
		// broker; franz-go refuses MaxProduceRequestsInflightPerBroker with it.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(int32(s.maxBytes)),
		kgo.MaxBufferedRecords(cmp.Or(cfg.MaxBufferedRecords, DefaultMaxBufferedRecords)),
		kgo.ProducerLinger(cfg.Linger),
		kgo.ProducerBatchCompression(compression(cfg.Compression)...),
		// Records not delivered within the timeout, or whose Publish ended, are failed and
		// dropped from the buffer, also while a request carrying them is unanswered (a
		// broker down): Publish has reported them failed, the relay will send them again,
		// and a copy left behind would be delivered after the outage as one more
		// duplicate per retry. franz-go bumps the producer epoch before producing again,
		// so the broker fences a late write of the abandoned request instead of storing
		// it behind newer messages. Its own retries stay deduplicated.
		kgo.RecordDeliveryTimeout(max(s.timeout, time.Second)), // franz-go's minimum
		kgo.AllowIdempotentProduceCancellation(),
		kgo.ProduceRequestTimeout(min(s.timeout, 10*time.Second)),
		// After NOT_LEADER or a lost connection the client refreshes metadata to find the
		// new leader; franz-go's default of at most one refresh per 5s would stall a
		// partition for seconds per leader move.
		kgo.MetadataMinAge(metadataMinAge),
		kgo.ProducerOnDataLossDetected(func(topic string, partition int32) {
			s.log.Error("kafka sink: the broker lost acknowledged records (out-of-order sequence number)",
				slog.String("topic", topic), slog.Int("partition", int(partition)))
		}),
		kgo.WithLogger(kgoLogger{s.log}),
		kgo.WithHooks(s.conns),
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if cfg.AutoCreateTopics {
		opts = append(opts, kgo.AllowAutoTopicCreation())
	}
	if m := cfg.saslMechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	s.opts = opts
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, &outbox.ConfigError{Field: "brokers", Reason: err.Error()}
	}
	s.cl = cl
	if err := s.checkStart(ctx, cl); err != nil {
		cl.Close()
		return nil, err
	}
	return s, nil
}

// checkStart pings the brokers once: an authentication refusal is an error, any other
// failure (brokers down or unreachable) a warning.
func (s *Sink) checkStart(ctx context.Context, cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(ctx, min(s.timeout, 5*time.Second))
	defer cancel()
	err := cl.Ping(ctx)
	if err == nil {
		return nil
	}
	if _, cause := s.conns.lastErr(); isAuthErr(err) || isAuthErr(cause) {
		return fmt.Errorf("%w: %w (check sasl_mechanism, sasl_user and sasl_password)", ErrAuth, err)
	}
	s.log.Warn("kafka sink: no broker reachable yet; publishes fail as unavailable until one is", slog.Any("error", err))
	return nil
}

// Client returns the franz-go client the sink currently publishes with. The sink may
// replace it after an unrecoverable producer error, and closes it on Close.
func (s *Sink) Client() *kgo.Client {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.cl
}

// Close releases the sink: it waits for running Publish calls and closes the client.
// Close is idempotent.
func (s *Sink) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.isClosed = true
		cl := s.cl
		s.mu.Unlock()
		cl.Close()
		s.probeMu.Lock()
		if s.probe != nil {
			s.probe.Close()
		}
		s.probeMu.Unlock()
	})
	return nil
}

// reset replaces old with a new client, after old's producer failed beyond recovery. Calls
// already running on old finish first (they hold the read lock).
func (s *Sink) reset(old *kgo.Client, why error) {
	s.mu.Lock()
	if s.isClosed || s.cl != old {
		s.mu.Unlock()
		return // closed, or another call reset it already
	}
	cl, err := kgo.NewClient(s.opts...)
	if err != nil {
		s.mu.Unlock()
		s.log.Error("kafka sink: replacing the failed producer", slog.Any("error", err))
		return
	}
	s.cl = cl
	s.mu.Unlock()
	s.log.Warn("kafka sink: producer failed beyond recovery; replaced the client", slog.Any("error", why))
	old.Close()
}

// probeClient returns the client for single-record probes. Caller holds probeMu.
func (s *Sink) probeClient() (*kgo.Client, error) {
	if s.probe != nil {
		return s.probe, nil
	}
	opts := append(append([]kgo.Opt(nil), s.opts...), kgo.ProducerLinger(0))
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	s.probe = cl
	return cl, nil
}

// connState remembers why the last connection attempt to a broker failed (refused, TLS,
// SASL), to explain timeouts: franz-go keeps buffering records while it cannot connect.
type connState struct {
	log   *slog.Logger
	mu    sync.Mutex
	err   error // with the broker's address
	cause error // as the dialer or broker said it
}

var _ kgo.HookBrokerConnect = (*connState)(nil)

func (c *connState) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.err, c.cause = nil, nil
		return
	}
	c.cause = err
	c.err = fmt.Errorf("connecting to broker %s: %w", net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port))), err)
	if isAuthErr(err) && c.log != nil {
		c.log.Error("kafka sink: the broker refuses the SASL credentials (check sasl_user and sasl_password); will keep trying",
			slog.Any("error", c.err))
	}
}

func (c *connState) lastErr() (err, cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err, c.cause
}

// kgoLogger sends franz-go's log lines to slog.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	switch {
	case k.l.Enabled(ctx, slog.LevelDebug):
		return kgo.LogLevelDebug
	case k.l.Enabled(ctx, slog.LevelInfo):
		return kgo.LogLevelInfo
	case k.l.Enabled(ctx, slog.LevelWarn):
		return kgo.LogLevelWarn
	case k.l.Enabled(ctx, slog.LevelError):
		return kgo.LogLevelError
	}
	return kgo.LogLevelNone
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var l slog.Level
	switch level {
	case kgo.LogLevelError:
		l = slog.LevelError
	case kgo.LogLevelWarn:
		l = slog.LevelWarn
	case kgo.LogLevelInfo:
		l = slog.LevelInfo
	default:
		l = slog.LevelDebug
	}
	k.l.Log(context.Background(), l, "kafka client: "+msg, keyvals...)
}
