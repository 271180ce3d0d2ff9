package redisinbox_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	goredis "github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/redisinbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
)

// BenchmarkConsume measures consuming b.N entries, pre-filled through the sink, into
// PostgreSQL: through the inbox (the adapter), and with the same loop without the inbox
// (XREADGROUP, a transaction per entry or per batch with one effect INSERT each, XACK
// after the commit).
//
//	go test -run '^$' -bench Consume -benchtime 20000x ./inbox/redisinbox/
func BenchmarkConsume(b *testing.B) {
	for _, batch := range []int{1, 500} {
		b.Run("inbox/batch="+strconv.Itoa(batch), func(b *testing.B) { benchInbox(b, batch) })
		b.Run("plain/batch="+strconv.Itoa(batch), func(b *testing.B) { benchPlain(b, batch) })
	}
}

func prefill(b *testing.B, e *env) {
	b.Helper()
	recs := make([]*outbox.Record, 0, 1000)
	for i := range b.N {
		recs = append(recs, record("orders", "k"+strconv.Itoa(i%100)))
		if len(recs) == cap(recs) || i == b.N-1 {
			e.publish(recs...)
			recs = recs[:0]
		}
	}
}

func benchInbox(b *testing.B, batch int) {
	e := newEnv(b)
	in := e.inbox(inbox.Config{})
	prefill(b, e)
	h := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		_, err := tx.(pgx.Tx).Exec(ctx, `INSERT INTO `+e.effects+` (message_id, key) VALUES ($1, $2)`, m.ID, m.Key)
		return err
	}
	b.ResetTimer()
	start := time.Now()
	e.run(redisinbox.Config{Inbox: in, Batch: batch, Logger: logtest.NewLevel(b, slog.LevelWarn)}, h)
	waitFor(b, "every effect", 10*time.Minute, func() bool { return e.effectCount() == b.N })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func benchPlain(b *testing.B, batch int) {
	e := newEnv(b)
	prefill(b, e)
	ctx := context.Background()
	stream := e.prefix + "orders"
	if err := e.rdb.XGroupCreate(ctx, stream, "plain", "0").Err(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; {
		res, err := e.rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: "plain", Consumer: "p", Streams: []string{stream, ">"},
			Count: int64(batch), Block: time.Second}).Result()
		if errors.Is(err, goredis.Nil) {
			continue
		}
		if err != nil {
			b.Fatal(err)
		}
		msgs := res[0].Messages
		ids := make([]string, len(msgs))
		err = pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
			for i, m := range msgs {
				ids[i] = m.ID
				if _, err := tx.Exec(ctx, `INSERT INTO `+e.effects+` (message_id, key) VALUES ($1, $2)`, m.Values["id"], m.Values["subject"]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := e.rdb.XAck(ctx, stream, "plain", ids...).Err(); err != nil {
			b.Fatal(err)
		}
		done += len(msgs)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
