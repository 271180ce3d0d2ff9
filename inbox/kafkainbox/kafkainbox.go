package kafkainbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
)

// Defaults of Config.
const (
	DefaultErrorDelay = time.Second
	// DefaultMaxQueued is how many fetched records of a partition may wait for its worker
	// before the partition's fetching is paused.
	DefaultMaxQueued = 1000
)

// Config configures a Consumer.
type Config struct {
	// Inbox applies each message once. Required.
	Inbox *inbox.Inbox
	// Brokers are the seed brokers, "host:port". Required.
	Brokers []string
	// Group is the Kafka consumer group. Required.
	Group string
	// Topics are the outbox topics to consume. Required.
	Topics []string
	// TopicPrefix and TopicMap map outbox topics to Kafka topics the way the Kafka sink's
	// TopicPrefix and Topics do: TopicMap[topic] when mapped, else TopicPrefix + topic.
	// Records are handed to the handler under their outbox topic.
	TopicPrefix string
	TopicMap    map[string]string
	// ClientOptions are more franz-go options, applied after the adapter's own (TLS, SASL,
	// session and heartbeat timing, fetch sizes). Options that change how offsets are
	// committed or how rebalances are handled break the adapter's guarantees.
	ClientOptions []kgo.Opt
	// Batch is the most records of one partition applied in one transaction (DeliverBatch).
	// Default 1: one transaction per record. A batch is what one poll returned for the
	// partition: the adapter never waits to fill one.
	Batch int
	// ErrorDelay is the pause before a record is delivered again after the inbox itself
	// failed (database unreachable). Default DefaultErrorDelay.
	ErrorDelay time.Duration
	// MaxQueued bounds the fetched records a partition holds while its worker is busy (a
	// retry waiting, a slow handler): beyond it, the partition's fetching pauses. Default
	// DefaultMaxQueued.
	MaxQueued int
	// RedriveInterval is how often the inbox's retried dead letters are applied
	// (inbox.RunRedrive). Default 5 s.
	RedriveInterval time.Duration
	// RetentionInterval is how often expired ids are deleted (inbox.RunRetention); negative
	// disables it (another replica runs it). Default one hour.
	RetentionInterval time.Duration
	// Logger receives the adapter's warnings. Default slog.Default().
	Logger *slog.Logger
}

// Validate returns a *outbox.ConfigError naming the first wrong field.
func (c Config) Validate() error {
	bad := func(field, reason string) error { return &outbox.ConfigError{Field: field, Reason: reason} }
	switch {
	case c.Inbox == nil:
		return bad("inbox", "required")
	case len(c.Brokers) == 0:
		return bad("brokers", "required: at least one host:port")
	case slices.Contains(c.Brokers, ""):
		return bad("brokers", "an empty broker address")
	case c.Group == "":
		return bad("group", "required")
	case len(c.Topics) == 0:
		return bad("topics", "required: at least one outbox topic")
	case c.Batch < 0:
		return bad("batch", "must not be negative")
	case c.ErrorDelay < 0:
		return bad("error_delay", "must not be negative")
	case c.MaxQueued < 0:
		return bad("max_queued", "must not be negative")
	case c.RedriveInterval < 0:
		return bad("redrive_interval", "must not be negative")
	}
	seen := map[string]string{}
	for _, t := range c.Topics {
		if t == "" {
			return bad("topics", "an empty outbox topic")
		}
		kt := c.kafkaTopic(t)
		if reason := checkTopic(kt); reason != "" {
			return bad("topics", fmt.Sprintf("outbox topic %q maps to Kafka topic %q: %s", t, kt, reason))
		}
		if other, ok := seen[kt]; ok && other != t {
			return bad("topics", fmt.Sprintf("outbox topics %q and %q both map to Kafka topic %q", other, t, kt))
		}
		seen[kt] = t
	}
	for _, from := range slices.Sorted(maps.Keys(c.TopicMap)) {
		if from == "" {
			return bad("topic_map", "an empty outbox topic is mapped")
		}
	}
	return nil
}

func (c Config) kafkaTopic(topic string) string {
	if t, ok := c.TopicMap[topic]; ok {
		return t
	}
	return c.TopicPrefix + topic
}

// checkTopic returns why name is not a legal Kafka topic name, or "".
func checkTopic(name string) string {
	switch name {
	case "":
		return "empty topic name"
	case ".", "..":
		return fmt.Sprintf("%q is not allowed as a topic name", name)
	}
	if len(name) > 249 {
		return "longer than 249 characters"
	}
	for i := range len(name) {
		switch ch := name[i]; {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '.', ch == '_', ch == '-':
		default:
			return fmt.Sprintf("character %q not allowed", ch)
		}
	}
	return ""
}

// Consumer consumes Kafka topics into an inbox: see the package documentation.
type Consumer struct {
	cfg    Config
	in     *inbox.Inbox
	log    *slog.Logger
	topics map[string]string // Kafka topic → outbox topic

	mu     sync.Mutex
	parts  map[tp]*partition
	cl     *kgo.Client
	runCtx context.Context
	h      inbox.Handler
}

type tp struct {
	topic     string
	partition int32
}

// New validates cfg and returns a Consumer. It does not connect: Run does.
func New(cfg Config) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Batch = max(cfg.Batch, 1)
	cfg.ErrorDelay = cmp.Or(cfg.ErrorDelay, DefaultErrorDelay)
	cfg.MaxQueued = cmp.Or(cfg.MaxQueued, DefaultMaxQueued)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Consumer{cfg: cfg, in: cfg.Inbox, log: cfg.Logger, topics: map[string]string{}, parts: map[tp]*partition{}}
	for _, t := range cfg.Topics {
		c.topics[cfg.kafkaTopic(t)] = t
	}
	return c, nil
}

// ErrRunning is returned by Run when the Consumer is running already.
var ErrRunning = errors.New("kafkainbox: consumer already running")

// Run joins the consumer group and applies the records of its partitions with handler
// until ctx ends; it then leaves the group and returns nil. It also runs the inbox's
// Redrive and (unless disabled) retention. It returns an error only when the client
// cannot be created (bad options); broker outages are logged and outlived.
func (c *Consumer) Run(ctx context.Context, handler inbox.Handler) error {
	c.mu.Lock()
	if c.cl != nil {
		c.mu.Unlock()
		return ErrRunning
	}
	c.runCtx, c.h = ctx, handler
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.cfg.Brokers...),
		kgo.ConsumerGroup(c.cfg.Group),
		kgo.ConsumeTopics(slices.Sorted(maps.Keys(c.topics))...),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsAssigned(c.assigned),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
		kgo.WithLogger(kgoLogger{c.log}),
	}
	cl, err := kgo.NewClient(append(opts, c.cfg.ClientOptions...)...)
	if err != nil {
		c.mu.Unlock()
		return fmt.Errorf("kafkainbox: creating the client: %w", err)
	}
	c.cl = cl
	c.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { _ = c.in.RunRedrive(ctx, handler, c.cfg.RedriveInterval) })
	if c.cfg.RetentionInterval >= 0 {
		wg.Go(func() { _ = c.in.RunRetention(ctx, c.cfg.RetentionInterval) })
	}
	c.poll(ctx, cl)
	// Stop the workers (each commits what it applied), then leave the group.
	c.stopAll()
	cl.Close()
	wg.Wait()
	c.mu.Lock()
	c.cl = nil
	c.mu.Unlock()
	return nil
}

// poll hands each poll's records to their partitions' workers until ctx ends. With
// BlockRebalanceOnPoll, no rebalance runs between PollRecords and AllowRebalance, so the
// records always belong to a partition this member owns and has a worker for.
func (c *Consumer) poll(ctx context.Context, cl *kgo.Client) {
	for ctx.Err() == nil {
		fs := cl.PollRecords(ctx, 0)
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return
		}
		fs.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, kgo.ErrClientClosed) {
				return
			}
			c.log.WarnContext(ctx, "kafkainbox: fetch failed; the client retries", "topic", topic, "partition", partition, "error", err)
		})
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			c.mu.Lock()
			w := c.parts[tp{p.Topic, p.Partition}]
			c.mu.Unlock()
			if w == nil {
				// Cannot happen with BlockRebalanceOnPoll; the records are not committed,
				// so the partition's owner reads them.
				c.log.WarnContext(ctx, "kafkainbox: records of a partition not assigned here; left to its owner",
					"topic", p.Topic, "partition", p.Partition, "records", len(p.Records))
				return
			}
			if w.push(p.Records) >= c.cfg.MaxQueued {
				cl.PauseFetchPartitions(map[string][]int32{p.Topic: {p.Partition}})
			}
		})
		cl.AllowRebalance()
	}
}

func (c *Consumer) assigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	// A partition paused under an earlier assignment would stay paused.
	cl.ResumeFetchPartitions(assigned)
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, ps := range assigned {
		for _, p := range ps {
			k := tp{topic, p}
			if c.parts[k] != nil {
				continue
			}
			w := newPartition(c, cl, topic, p)
			c.parts[k] = w
			go w.run(c.runCtx, c.h)
		}
	}
}

// revoked stops the workers of the revoked partitions and waits for them: each finishes
// the transaction it is in and commits the offsets of what it applied, before the
// partitions go to another member.
func (c *Consumer) revoked(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
	c.stop(revoked)
}

func (c *Consumer) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.stop(lost)
}

func (c *Consumer) stop(parts map[string][]int32) {
	var ws []*partition
	c.mu.Lock()
	for topic, ps := range parts {
		for _, p := range ps {
			k := tp{topic, p}
			if w := c.parts[k]; w != nil {
				ws = append(ws, w)
				delete(c.parts, k)
			}
		}
	}
	c.mu.Unlock()
	for _, w := range ws {
		w.stopAndWait()
	}
}

func (c *Consumer) stopAll() {
	c.mu.Lock()
	all := map[string][]int32{}
	for k := range c.parts {
		all[k.topic] = append(all[k.topic], k.partition)
	}
	c.mu.Unlock()
	c.stop(all)
}

// kgoLogger forwards franz-go's warnings and errors to slog.
type kgoLogger struct{ l *slog.Logger }

func (k kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lv := slog.LevelWarn
	if level == kgo.LogLevelError {
		lv = slog.LevelError
	}
	k.l.Log(context.Background(), lv, "kafkainbox: franz-go: "+msg, keyvals...)
}
