package amqpinbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/amqpinbox"
)

// BenchmarkConsume measures consuming b.N messages, pre-filled through the sink into a
// private queue of the shared RabbitMQ, into PostgreSQL: through the inbox (amqpinbox, one
// transaction per message and Batch 64), and with the same consumer loop without the inbox
// (one INSERT of the effect row per message in its own transaction, or up to 64 of what
// arrived per transaction; acked after the commit). Prefetch 256 in both.
//
//	go test -run '^$' -bench Consume -benchtime 5000x ./inbox/amqpinbox/
func BenchmarkConsume(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("inbox/batch%d", batch), func(b *testing.B) {
			benchConsume(b, func(ctx context.Context, e *env, tp *topology) {
				cfg := tp.config(e.in)
				cfg.Batch, cfg.Prefetch = batch, 256
				c, err := amqpinbox.New(cfg)
				if err != nil {
					b.Error(err)
					return
				}
				_ = c.Run(ctx, e.insert)
			})
		})
		b.Run(fmt.Sprintf("plain/batch%d", batch), func(b *testing.B) {
			benchConsume(b, func(ctx context.Context, e *env, tp *topology) { plainConsume(ctx, b, e, tp, batch) })
		})
	}
}

func benchConsume(b *testing.B, consume func(ctx context.Context, e *env, tp *topology)) {
	tp := newTopology(b)
	e := newEnv(b, inbox.Config{})
	s := tp.sink(b, "bench")
	recs := make([]*outbox.Record, 0, 500)
	for i := range b.N {
		recs = append(recs, record("t", fmt.Sprint("k", i%64), `{"n":1}`))
		if len(recs) == cap(recs) || i == b.N-1 {
			publish(b, s, recs...)
			recs = recs[:0]
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.ResetTimer()
	began := time.Now()
	go func() { defer close(done); consume(ctx, e, tp) }()
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

// plainConsume is the consumer loop without the inbox.
func plainConsume(ctx context.Context, b *testing.B, e *env, tp *topology, batch int) {
	conn, err := amqp091.Dial(brokerURL())
	if err != nil {
		b.Error(err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Error(err)
		return
	}
	if err := ch.Qos(256, 0, false); err != nil {
		b.Error(err)
		return
	}
	ds, err := ch.ConsumeWithContext(ctx, tp.queue, "plain", false, false, false, false, nil)
	if err != nil {
		b.Error(err)
		return
	}
	for {
		var chunk []amqp091.Delivery
		select {
		case <-ctx.Done():
			return
		case d := <-ds:
			chunk = append(chunk, d)
		}
		for more := true; more && len(chunk) < batch; {
			select {
			case d := <-ds:
				chunk = append(chunk, d)
			default:
				more = false
			}
		}
		err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
			for _, d := range chunk {
				if _, err := tx.Exec(ctx, `INSERT INTO `+e.effects+` (message_id, key, payload) VALUES ($1, $2, $3)`,
					d.MessageId, fmt.Sprint(d.Headers["cloudEvents:subject"]), string(d.Body)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return
		}
		for _, d := range chunk {
			_ = d.Ack(false)
		}
	}
}
