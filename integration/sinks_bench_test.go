package integration_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/amqp"
	"github.com/outboxgo/outbox/sink/kafka"
	"github.com/outboxgo/outbox/sink/mqtt"
	"github.com/outboxgo/outbox/sink/nats"
	"github.com/outboxgo/outbox/sink/redis"
	"github.com/outboxgo/outbox/sink/webhook"
)

// sinkCases build, for one benchmark, a sink publishing to a destination private to it.
var sinkCases = []struct {
	name string
	make func(b *testing.B) sink.Sink
}{
	{"nats", func(b *testing.B) sink.Sink {
		nc := natstest.Connect(b)
		_, prefix := natstest.Stream(b, nc)
		return must(b)(nats.New(context.Background(), nats.Config{URL: natstest.URL(), SubjectPrefix: prefix}))
	}},
	{"kafka-kfake", func(b *testing.B) sink.Sink {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(8, "bench.orders"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		return must(b)(kafka.New(context.Background(), kafka.Config{Brokers: c.ListenAddrs()}))
	}},
	{"rabbitmq", func(b *testing.B) sink.Sink {
		// A durable queue bound to a private exchange, deleted afterwards.
		name := pgtest.Name(b)
		conn, err := amqp091.Dial("amqp://guest:guest@127.0.0.1:5672/")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		ch, err := conn.Channel()
		if err != nil {
			b.Fatal(err)
		}
		if err := ch.ExchangeDeclare(name, "topic", false, true, false, false, nil); err != nil {
			b.Fatal(err)
		}
		if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
			b.Fatal(err)
		}
		if err := ch.QueueBind(name, "#", name, false, nil); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _, _ = ch.QueueDelete(name, false, false, false); _ = ch.ExchangeDelete(name, false, false) })
		return must(b)(amqp.New(context.Background(), amqp.Config{Exchange: name}))
	}},
	{"redis", func(b *testing.B) sink.Sink {
		prefix := pgtest.Name(b) + ":"
		b.Cleanup(func() {
			c := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
			defer c.Close()
			c.Del(context.Background(), prefix+"bench.orders")
		})
		return must(b)(redis.New(context.Background(), redis.Config{StreamPrefix: prefix}))
	}},
	{"mqtt", func(b *testing.B) sink.Sink {
		return must(b)(mqtt.New(context.Background(), mqtt.Config{TopicPrefix: pgtest.Name(b) + "/"}))
	}},
	{"webhook", func(b *testing.B) sink.Sink {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
		}))
		b.Cleanup(srv.Close)
		return must(b)(webhook.New(context.Background(), webhook.Config{URL: srv.URL, Secrets: []string{"whsec_" + strings.Repeat("QUJD", 8)}}))
	}},
}

func must(b *testing.B) func(s sink.Sink, err error) sink.Sink {
	return func(s sink.Sink, err error) sink.Sink {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = s.Close() })
		return s
	}
}

// BenchmarkDrainSinks drains a 100,000-message backlog from PostgreSQL into each sink, every
// message acknowledged by its broker before its row is deleted.
func BenchmarkDrainSinks(b *testing.B) {
	const n, keys = 100_000, 1000
	for _, sc := range sinkCases {
		b.Run(sc.name, func(b *testing.B) {
			bd := setup(b)
			sk := sc.make(b)
			var total time.Duration
			for range b.N {
				b.StopTimer()
				backlog(b, bd, n, keys)
				if _, err := bd.pool.Exec(context.Background(), `VACUUM ANALYZE `+bd.table); err != nil {
					b.Fatal(err)
				}
				obs := &countingHook{}
				b.StartTimer()
				start := time.Now()
				stop := startRelay(b, bd, sk, poll.Config{}, relay.Config{Hooks: []relay.Hook{obs}})
				for obs.published.Load() < n {
					time.Sleep(time.Millisecond)
				}
				total += time.Since(start)
				b.StopTimer()
				stop()
			}
			b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
		})
	}
}
