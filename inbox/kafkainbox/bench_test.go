package kafkainbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/kafkainbox"
)

// BenchmarkConsume measures consuming b.N records, pre-filled through the sink into a
// four-partition topic of an in-process kfake cluster, into PostgreSQL: through the inbox
// (kafkainbox, one transaction per record and Batch 64), and with the same consumer loop
// without the inbox (one INSERT of the effect row per record in its own transaction, or
// up to 64 per transaction; offsets committed after each poll's records of a partition).
//
//	go test -run '^$' -bench Consume -benchtime 5000x ./inbox/kafkainbox/
func BenchmarkConsume(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("inbox/batch%d", batch), func(b *testing.B) {
			benchConsume(b, func(ctx context.Context, e *env, brokers []string, topic string) {
				c, err := kafkainbox.New(kafkainbox.Config{Inbox: e.in, Brokers: brokers, Group: uniqueName("g"),
					Topics: []string{topic}, Batch: batch, RetentionInterval: -1, ClientOptions: fastGroup})
				if err != nil {
					b.Fatal(err)
				}
				_ = c.Run(ctx, e.insert)
			})
		})
		b.Run(fmt.Sprintf("plain/batch%d", batch), func(b *testing.B) {
			benchConsume(b, func(ctx context.Context, e *env, brokers []string, topic string) {
				plainConsume(ctx, b, e, brokers, topic, batch)
			})
		})
	}
}

func benchConsume(b *testing.B, consume func(ctx context.Context, e *env, brokers []string, topic string)) {
	c := newCluster(b)
	topic := uniqueName("bench")
	createTopic(b, c, topic, 4)
	e := newEnv(b, inbox.Config{})
	s := newSink(b, c, "bench")
	recs := make([]*outbox.Record, 0, 1000)
	for i := range b.N {
		recs = append(recs, record(topic, fmt.Sprint("k", i%64), `{"n":1}`))
		if len(recs) == cap(recs) || i == b.N-1 {
			publish(b, s, recs...)
			recs = recs[:0]
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.ResetTimer()
	began := time.Now()
	go func() { defer close(done); consume(ctx, e, c.ListenAddrs(), topic) }()
	for {
		var n int
		if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM `+e.effects).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n >= b.N {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(began).Seconds()
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(b.N)/elapsed, "msgs/s")
}

// plainConsume is the consumer loop without the inbox: each record's effect row in a
// transaction of its own (batch 1) or up to batch of a poll's records of a partition in one;
// the partition's offset committed after them.
func plainConsume(ctx context.Context, b *testing.B, e *env, brokers []string, topic string, batch int) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(uniqueName("g")),
		kgo.ConsumeTopics(topic), kgo.DisableAutoCommit()}, fastGroup...)...)
	if err != nil {
		b.Error(err)
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if len(p.Records) == 0 {
				return
			}
			last := p.Records[len(p.Records)-1]
			defer func() { _ = cl.CommitRecords(ctx, last) }()
			for len(p.Records) > 0 {
				n := min(batch, len(p.Records))
				chunk := p.Records[:n]
				p.Records = p.Records[n:]
				err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
					for _, r := range chunk {
						if _, err := tx.Exec(ctx, `INSERT INTO `+e.effects+` (message_id, key, payload) VALUES ($1, $2, $3)`,
							string(r.Headers[0].Value), string(r.Key), string(r.Value)); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					return // ctx ended
				}
			}
		})
	}
}
