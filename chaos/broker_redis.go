package chaos

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/relay"
)

// ---- Redis Streams: a private stream on the shared server ----

type redisBroker struct {
	addr   string
	px     *faultproxy.Proxy
	prefix string // stream key = prefix + topic
	client *redis.Client
}

func startRedis(addr, name string) (*redisBroker, error) {
	b := &redisBroker{addr: addr, prefix: name + ":"}
	b.client = redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.client.Ping(ctx).Err(); err != nil {
		_ = b.client.Close()
		return nil, fmt.Errorf("connecting to Redis at %s: %w", addr, err)
	}
	var err error
	if b.px, err = startProxy(addr); err != nil {
		_ = b.client.Close()
		return nil, err
	}
	return b, nil
}

func (b *redisBroker) stream() string { return b.prefix + outboxTopic }

func (b *redisBroker) relayEnv() []string {
	return []string{
		"OUTBOX_SINK_TYPE=redis",
		"OUTBOX_SINK_REDIS_ADDR=" + b.px.Addr(),
		"OUTBOX_SINK_REDIS_STREAM_PREFIX=" + b.prefix,
		"OUTBOX_SINK_REDIS_PUBLISH_TIMEOUT=5s",
	}
}

// consume reads the stream from its start with XREAD, in entry order.
func (b *redisBroker) consume(ctx context.Context, deliver func(delivery)) {
	_ = b.read(ctx, "0", "", deliver)
}

// read delivers the stream's entries after the entry id from until ctx ends or, when upTo is
// set, up to that entry id.
func (b *redisBroker) read(ctx context.Context, from, upTo string, deliver func(delivery)) error {
	last := from
	for ctx.Err() == nil {
		res, err := b.client.XRead(ctx, &redis.XReadArgs{Streams: []string{b.stream(), last}, Count: 1000, Block: time.Second}).Result()
		if errors.Is(err, redis.Nil) {
			if upTo != "" {
				return nil
			}
			continue
		}
		if err != nil {
			_ = relay.Sleep(ctx, 200*time.Millisecond)
			continue
		}
		for _, s := range res {
			for _, m := range s.Messages {
				last = m.ID
				id, _ := m.Values["id"].(string)
				data, _ := m.Values["data"].(string)
				deliver(delivery{id: id, payload: []byte(data), at: time.Now()})
				if m.ID == upTo {
					return nil
				}
			}
		}
	}
	return ctx.Err()
}

func (b *redisBroker) restart(context.Context, time.Duration) error { return errNoRestart }
func (b *redisBroker) canRestart() bool                             { return false }
func (b *redisBroker) cut()                                         { b.px.Cut() }
func (b *redisBroker) restore()                                     { b.px.Restore() }

func (b *redisBroker) sweep(ctx context.Context, fn func(delivery)) error {
	last, err := b.client.XRevRangeN(ctx, b.stream(), "+", "-", 1).Result()
	if err != nil {
		return err
	}
	if len(last) == 0 {
		return nil
	}
	return b.read(ctx, "0", last[0].ID, fn)
}

func (b *redisBroker) close() {
	if b.px != nil {
		b.px.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.client.Del(ctx, b.stream()).Err()
	_ = b.client.Close()
}

func (b *redisBroker) seesHeaders() bool { return false }

func (b *redisBroker) notes() []string {
	return []string{"Redis: the shared server is never restarted: no broker-restart; broker-cut (every relay connection cut at a fault proxy, new ones refused for the outage) stands in for it. The consumer reads a private stream with XREAD; the stream is deleted at the end."}
}

// redisInboxGroup is the consumers' consumer group on the run's stream, beside the raw
// consumer's XREAD.
const redisInboxGroup = "chaos-inbox"

func (b *redisBroker) inboxSetup(context.Context, int) (func(int) map[string]string, error) {
	return func(i int) map[string]string {
		return map[string]string{
			"addr": b.px.Addr(), "stream_prefix": b.prefix, "topic": outboxTopic,
			"group": redisInboxGroup, "consumer": "chaos-consumer-" + strconv.Itoa(i),
		}
	}, nil
}

// inboxProcesses: one. Redis hands a key's entries to any consumer of a group.
func (b *redisBroker) inboxProcesses(int) int { return 1 }

func (b *redisBroker) inboxNotes(int) []string {
	return []string{"consumers (Redis): one redisinbox process in a consumer group " + redisInboxGroup + " of its own on the run's stream (created from the stream's start), under a stable consumer name, through the broker's fault proxy: one consumer applies the stream in order, and a restarted one reads its own pending entries first, in stream order; a group of several would hand a key's entries to any of them, so one process runs (killed and restarted under the same name)."}
}
