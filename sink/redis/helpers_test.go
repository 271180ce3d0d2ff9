package redis_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/service"
	"github.com/outboxgo/outbox/sink"
	redissink "github.com/outboxgo/outbox/sink/redis"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// redisAddr is the shared test server: OUTBOX_TEST_REDIS_ADDR or 127.0.0.1:6379.
func redisAddr() string {
	if a := os.Getenv("OUTBOX_TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// connect returns a client to the shared server, database 0, closed when the test ends. It
// fails the test when Redis is unreachable (with -short it skips it).
func connect(t testing.TB) *goredis.Client {
	t.Helper()
	service.Require(t, "Redis")
	c := goredis.NewClient(&goredis.Options{Addr: redisAddr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis is not reachable at %s: %v (start it, or point OUTBOX_TEST_REDIS_ADDR at one)", redisAddr(), err)
	}
	return c
}

// newPrefix returns a key prefix private to the test; every key under it is deleted when the
// test ends. The server is shared: tests touch nothing else.
func newPrefix(t testing.TB, c *goredis.Client) string {
	t.Helper()
	prefix := "outbox-test:" + strings.ReplaceAll(outbox.NewID().String(), "-", "") + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The prefix holds no glob characters, so the pattern matches exactly its keys.
		it := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for it.Next(ctx) {
			keys = append(keys, it.Val())
		}
		if err := it.Err(); err != nil {
			t.Errorf("listing test keys %s*: %v", prefix, err)
			return
		}
		if len(keys) > 0 {
			if err := c.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("deleting test keys %s*: %v", prefix, err)
			}
		}
	})
	return prefix
}

func newSink(t testing.TB, cfg redissink.Config) *redissink.Sink {
	t.Helper()
	if cfg.Addr == "" || cfg.Addr == redisAddr() {
		service.Require(t, "Redis")
	}
	if cfg.Logger == nil {
		cfg.Logger = logtest.New(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := redissink.New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// receiver reads streams from their first entry with XREAD and decodes every entry from the
// sink's field layout.
type receiver struct {
	c       *goredis.Client
	topics  map[string]string // stream key -> topic
	streams []string          // keys, then last ids: XREAD's STREAMS argument
	buf     []sinktest.Received
}

// newReceiver reads the streams of topics (prefix + topic).
func newReceiver(c *goredis.Client, prefix string, topics ...string) *receiver {
	r := &receiver{c: c, topics: map[string]string{}}
	for _, topic := range topics {
		r.topics[prefix+topic] = topic
		r.streams = append(r.streams, prefix+topic)
	}
	for range topics {
		r.streams = append(r.streams, "0")
	}
	return r
}

func (r *receiver) Receive(ctx context.Context) (sinktest.Received, error) {
	n := len(r.streams) / 2
	for len(r.buf) == 0 {
		if err := ctx.Err(); err != nil {
			return sinktest.Received{}, err
		}
		res, err := r.c.XRead(ctx, &goredis.XReadArgs{Streams: r.streams, Count: 1000, Block: 100 * time.Millisecond}).Result()
		if err == goredis.Nil {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return sinktest.Received{}, ctx.Err()
			}
			return sinktest.Received{}, fmt.Errorf("XREAD: %w", err)
		}
		for _, st := range res {
			for i := 0; i < n; i++ {
				if r.streams[i] == st.Stream && len(st.Messages) > 0 {
					r.streams[n+i] = st.Messages[len(st.Messages)-1].ID
				}
			}
			for _, m := range st.Messages {
				rec := decode(r.topics[st.Stream], m.Values)
				if err := validate(rec); err != nil {
					return sinktest.Received{}, fmt.Errorf("entry %s of %s: %w", m.ID, st.Stream, err)
				}
				r.buf = append(r.buf, rec)
			}
		}
	}
	m := r.buf[0]
	r.buf = r.buf[1:]
	return m, nil
}

// decode maps a stream entry's fields to a sinktest.Received.
func decode(topic string, values map[string]any) sinktest.Received {
	rec := sinktest.Received{Topic: topic, Headers: map[string]string{}}
	for name, v := range values {
		s := fmt.Sprint(v)
		switch name {
		case "id":
			rec.ID = s
		case "source":
			rec.Source = s
		case "specversion":
			rec.SpecVersion = s
		case "type":
			rec.Type = s
		case "subject":
			rec.Subject = s
		case "time":
			rec.Time = s
		case "datacontenttype":
			rec.DataContentType = s
		case sink.SeqAttribute:
			rec.OutboxSeq = s
		case redissink.FieldData:
			rec.Payload = []byte(s)
		default:
			if h, ok := strings.CutPrefix(name, redissink.HeaderFieldPrefix); ok {
				rec.Headers[h] = s
			} else {
				rec.Headers["unexpected field "+name] = s
			}
		}
	}
	return rec
}

// validate checks the attributes decode found with the CloudEvents Go SDK's event package:
// Redis Streams have no CloudEvents binding, so the entry's attribute fields are set on an
// SDK event, whose setters parse them (time as RFC 3339) and whose Validate applies the
// specification's rules.
func validate(rec sinktest.Received) error {
	ev := event.New(rec.SpecVersion)
	ev.SetID(rec.ID)
	ev.SetSource(rec.Source)
	ev.SetType(rec.Type)
	if rec.Subject != "" {
		ev.SetSubject(rec.Subject)
	}
	if rec.DataContentType != "" {
		ev.SetDataContentType(rec.DataContentType)
	}
	if rec.OutboxSeq != "" {
		ev.SetExtension(sink.SeqAttribute, rec.OutboxSeq)
	}
	ts, err := types.ParseTime(rec.Time)
	if err != nil {
		return fmt.Errorf("time %q: %w", rec.Time, err)
	}
	ev.SetTime(ts)
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("not a valid CloudEvent: %w", err)
	}
	if ev.SpecVersion() != rec.SpecVersion {
		return fmt.Errorf("specversion %q is not one the SDK knows", rec.SpecVersion)
	}
	return nil
}

func publish(t testing.TB, s *redissink.Sink, recs ...*outbox.Record) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := s.Publish(ctx, recs)
	if len(res) != len(recs) {
		t.Fatalf("Publish returned %d results for %d messages", len(res), len(recs))
	}
	return res
}
