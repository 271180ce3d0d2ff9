package natsinbox_test

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/natsinbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
)

// BenchmarkConsume measures consuming b.N messages, pre-filled through the sink, into
// PostgreSQL: through the inbox (the adapter), and with the same loop without the inbox (a
// transaction per message or per batch, one effect INSERT each, acked after the commit).
//
//	go test -run '^$' -bench Consume -benchtime 20000x ./inbox/natsinbox/
func BenchmarkConsume(b *testing.B) {
	for _, batch := range []int{1, 500} {
		b.Run("inbox/batch="+strconv.Itoa(batch), func(b *testing.B) { benchInbox(b, batch) })
		b.Run("plain/batch="+strconv.Itoa(batch), func(b *testing.B) { benchPlain(b, batch) })
	}
	b.Run("inbox-bulk/batch=500", func(b *testing.B) { benchBulk(b, 500) })
}

// benchBulk is benchInbox with RunBulk: a batch's effects in one multi-row INSERT.
func benchBulk(b *testing.B, batch int) {
	e := newEnv(b)
	in := e.inbox(inbox.Config{})
	prefill(b, e)
	h := func(ctx context.Context, tx outbox.Tx, ms []inbox.Message) error {
		ids, keys := make([]string, len(ms)), make([]string, len(ms))
		for i, m := range ms {
			ids[i], keys[i] = m.ID, m.Key
		}
		_, err := tx.(pgx.Tx).Exec(ctx, `INSERT INTO `+e.effects+` (message_id, key) SELECT * FROM unnest($1::text[], $2::text[])`, ids, keys)
		return err
	}
	b.ResetTimer()
	start := time.Now()
	e.runBulk(natsinbox.Config{Inbox: in, Batch: batch, Logger: logtest.NewLevel(b, slog.LevelWarn)}, h)
	waitFor(b, "every effect", 10*time.Minute, func() bool { return e.effectCount() == b.N })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
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
	e.run(natsinbox.Config{Inbox: in, Batch: batch, Logger: logtest.NewLevel(b, slog.LevelWarn)}, h)
	waitFor(b, "every effect", 10*time.Minute, func() bool { return e.effectCount() == b.N })
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func benchPlain(b *testing.B, batch int) {
	e := newEnv(b)
	prefill(b, e)
	js, err := jetstream.New(e.nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	cons, err := js.CreateOrUpdateConsumer(ctx, e.stream, jetstream.ConsumerConfig{Durable: "plain", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	it, err := cons.Messages(jetstream.PullMaxMessages(max(2*batch, 64)))
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	msgs := make([]jetstream.Msg, 0, batch)
	for done := 0; done < b.N; {
		m, err := it.Next()
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs[:0], m)
		for len(msgs) < batch && done+len(msgs) < b.N {
			m, err := it.Next(jetstream.NextMaxWait(time.Millisecond))
			if err != nil {
				break
			}
			msgs = append(msgs, m)
		}
		err = pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
			for _, m := range msgs {
				if _, err := tx.Exec(ctx, `INSERT INTO `+e.effects+` (message_id, key) VALUES ($1, $2)`,
					m.Headers().Get("ce-id"), m.Headers().Get("ce-subject")); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range msgs {
			_ = m.Ack()
		}
		done += len(msgs)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
