package inbox_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

// BenchmarkApply measures what the inbox costs a consumer on PostgreSQL, broker aside: the
// same effect (one INSERT in the consumer's transaction, into a table without index: the
// cheapest effect there is) applied without the inbox and through it, with a transaction per
// message and with batches of 100 (DeliverBatch); and, a transaction per message, a
// projection's effect (a per-key counter upserted). Each message has a key and a position,
// as the relay's are. msgs/s is the figure to compare.
//
//	go test ./inbox/ -run '^$' -bench BenchmarkApply -benchtime 20000x -count 3
func BenchmarkApply(b *testing.B) {
	pool, schema := pgtest.Schema(b)
	ctx := context.Background()
	in, err := inbox.New(ctx, inbox.Config{Pool: pool, Table: schema + ".inbox", Consumer: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		b.Fatal(err)
	}
	effects := pgx.Identifier{schema, "effects"}.Sanitize()
	if _, err := pool.Exec(ctx, `CREATE TABLE `+effects+` (message_id text NOT NULL, key text NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	insert := `INSERT INTO ` + effects + ` (message_id, key) VALUES ($1, $2)`
	effect := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		_, err := tx.(pgx.Tx).Exec(ctx, insert, m.ID, m.Key)
		return err
	}
	var seq int64
	next := func() inbox.Message {
		seq++
		return inbox.Message{ID: outbox.NewID().String(), Topic: "orders", Type: "order.created", Source: "bench",
			Key: "k" + strconv.FormatInt(seq%1000, 10), Time: time.Now(), Position: seq, Payload: []byte(`{}`)}
	}
	report := func(b *testing.B, start time.Time) {
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	}
	b.Run("tx-per-message/no-inbox", func(b *testing.B) {
		start := time.Now()
		for range b.N {
			m := next()
			if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return effect(ctx, tx, m) }); err != nil {
				b.Fatal(err)
			}
		}
		report(b, start)
	})
	b.Run("tx-per-message/inbox", func(b *testing.B) {
		start := time.Now()
		for range b.N {
			if o, err := in.Deliver(ctx, inbox.Delivery{Message: next()}, effect); err != nil || o.Result != inbox.Applied {
				b.Fatal(o, err)
			}
		}
		report(b, start)
	})
	// A projection's effect: a per-key counter, upserted.
	counters := pgx.Identifier{schema, "counters"}.Sanitize()
	if _, err := pool.Exec(ctx, `CREATE TABLE `+counters+` (key text PRIMARY KEY, n bigint NOT NULL, last_id text NOT NULL)`); err != nil {
		b.Fatal(err)
	}
	upsert := `INSERT INTO ` + counters + ` AS c (key, n, last_id) VALUES ($1, 1, $2) ON CONFLICT (key) DO UPDATE SET n = c.n + 1, last_id = excluded.last_id`
	count := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		_, err := tx.(pgx.Tx).Exec(ctx, upsert, m.Key, m.ID)
		return err
	}
	b.Run("tx-per-message,counter/no-inbox", func(b *testing.B) {
		start := time.Now()
		for range b.N {
			m := next()
			if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return count(ctx, tx, m) }); err != nil {
				b.Fatal(err)
			}
		}
		report(b, start)
	})
	b.Run("tx-per-message,counter/inbox", func(b *testing.B) {
		start := time.Now()
		for range b.N {
			if o, err := in.Deliver(ctx, inbox.Delivery{Message: next()}, count); err != nil || o.Result != inbox.Applied {
				b.Fatal(o, err)
			}
		}
		report(b, start)
	})
	const batch = 100
	b.Run("batch-100/no-inbox", func(b *testing.B) {
		start := time.Now()
		for done := 0; done < b.N; done += batch {
			err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
				for range min(batch, b.N-done) {
					if err := effect(ctx, tx, next()); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		report(b, start)
	})
	b.Run("batch-100/inbox", func(b *testing.B) {
		start := time.Now()
		ds := make([]inbox.Delivery, 0, batch)
		for done := 0; done < b.N; done += batch {
			ds = ds[:0]
			for range min(batch, b.N-done) {
				ds = append(ds, inbox.Delivery{Message: next()})
			}
			if _, err := in.DeliverBatch(ctx, ds, effect); err != nil {
				b.Fatal(err)
			}
		}
		report(b, start)
	})
	// The effects of a batch in one statement (DeliverBulk), against the same without inbox.
	bulkInsert := `INSERT INTO ` + effects + ` (message_id, key) SELECT * FROM unnest($1::text[], $2::text[])`
	bulk := func(ctx context.Context, tx outbox.Tx, ms []inbox.Message) error {
		ids, keys := make([]string, len(ms)), make([]string, len(ms))
		for i, m := range ms {
			ids[i], keys[i] = m.ID, m.Key
		}
		_, err := tx.(pgx.Tx).Exec(ctx, bulkInsert, ids, keys)
		return err
	}
	b.Run("bulk-100/no-inbox", func(b *testing.B) {
		start := time.Now()
		ms := make([]inbox.Message, 0, batch)
		for done := 0; done < b.N; done += batch {
			ms = ms[:0]
			for range min(batch, b.N-done) {
				ms = append(ms, next())
			}
			if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return bulk(ctx, tx, ms) }); err != nil {
				b.Fatal(err)
			}
		}
		report(b, start)
	})
	b.Run("bulk-100/inbox", func(b *testing.B) {
		start := time.Now()
		ds := make([]inbox.Delivery, 0, batch)
		for done := 0; done < b.N; done += batch {
			ds = ds[:0]
			for range min(batch, b.N-done) {
				ds = append(ds, inbox.Delivery{Message: next()})
			}
			if _, err := in.DeliverBulk(ctx, ds, bulk); err != nil {
				b.Fatal(err)
			}
		}
		report(b, start)
	})
}
