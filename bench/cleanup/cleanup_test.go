package cleanup

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox/dialect/postgres"
)

var flagRows = flag.Int("rows", 1_000_000, "published rows each benchmark removes")

// payload is a typical event's size.
const payload = 512

func pgPool(b *testing.B) *pgxpool.Pool {
	b.Helper()
	url := os.Getenv("OUTBOX_TEST_POSTGRES_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		b.Fatalf("connecting: %v", err)
	}
	b.Cleanup(pool.Close)
	return pool
}

// schema creates a schema of its own for one benchmark and drops it at the end.
func schema(b *testing.B, pool *pgxpool.Pool, name string) string {
	b.Helper()
	s := fmt.Sprintf("cleanup_%s_%d", name, time.Now().UnixNano())
	exec(b, pool, `CREATE SCHEMA `+s)
	b.Cleanup(func() { _, _ = pool.Exec(context.Background(), `DROP SCHEMA `+s+` CASCADE`) })
	return s
}

func exec(b *testing.B, pool *pgxpool.Pool, sql string, args ...any) {
	b.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		b.Fatalf("%s: %v", sql, err)
	}
}

// fill inserts n rows created two hours ago, marked published (published) or not, over 1,000
// keys, in statements of 100,000 rows, and checkpoints so that the measured WAL is the
// cleanup's own.
func fill(b *testing.B, pool *pgxpool.Pool, table string, n int, published bool) {
	b.Helper()
	pub := "NULL"
	if published {
		pub = "now() - interval '2 hours'"
	}
	for done := 0; done < n; done += 100_000 {
		exec(b, pool, `INSERT INTO `+table+` (message_id, topic, key, type, payload, created_at, published_at)
SELECT gen_random_uuid(), 'orders.created', 'order-' || (g % 1000), 'created', convert_to(repeat('x', $2), 'UTF8'),
       now() - interval '2 hours', `+pub+`
FROM generate_series(1, $1) AS g`, min(100_000, n-done), payload)
	}
	exec(b, pool, `VACUUM ANALYZE `+table)
	exec(b, pool, `CHECKPOINT`)
}

func lsn(b *testing.B, pool *pgxpool.Pool) string {
	b.Helper()
	var l string
	if err := pool.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&l); err != nil {
		b.Fatal(err)
	}
	return l
}

func walSince(b *testing.B, pool *pgxpool.Pool, from string) int64 {
	b.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint`, from).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

func size(b *testing.B, pool *pgxpool.Pool, table string) int64 {
	b.Helper()
	var n int64
	if err := pool.QueryRow(context.Background(), `SELECT (pg_total_relation_size($1::regclass) +
  coalesce((SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree($1::regclass) WHERE relid <> $1::regclass), 0))::bigint`, table).Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

func store(b *testing.B, pool *pgxpool.Pool, table string) *postgres.Store {
	b.Helper()
	st, err := postgres.New(context.Background(), postgres.Config{Pool: pool, Table: table})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.MigrateUp(context.Background()); err != nil {
		b.Fatal(err)
	}
	return st
}

// report adds the figures every sub-benchmark reports.
func report(b *testing.B, rows int, took time.Duration, wal, sizeAfter int64) {
	b.ReportMetric(float64(rows)/took.Seconds(), "rows/s")
	b.ReportMetric(float64(wal)/float64(rows), "WAL-B/row")
	b.ReportMetric(float64(sizeAfter)/(1<<20), "MiB-after")
	b.ReportMetric(0, "ns/op") // the op is the whole cleanup: the rows/s say it
	b.Logf("%d rows in %s: %.0f rows/s, WAL %.1f MiB (%.0f B/row), table %.1f MiB after",
		rows, took.Round(time.Millisecond), float64(rows)/took.Seconds(), float64(wal)/(1<<20), float64(wal)/float64(rows), float64(sizeAfter)/(1<<20))
}

// BenchmarkCleanup: see the package doc.
func BenchmarkCleanup(b *testing.B) {
	pool := pgPool(b)
	rows := *flagRows
	ctx := context.Background()

	b.Run("finish", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			table := schema(b, pool, "finish") + ".outbox"
			store(b, pool, table)
			fill(b, pool, table, rows, false)
			var first int64
			if err := pool.QueryRow(ctx, `SELECT min(id) FROM `+table).Scan(&first); err != nil {
				b.Fatal(err)
			}
			from := lsn(b, pool)
			b.StartTimer()
			start := time.Now()
			ids := make([]int64, 0, 1000)
			for lo := first; lo < first+int64(rows); lo += 1000 {
				ids = ids[:0]
				for id := lo; id < lo+1000 && id < first+int64(rows); id++ {
					ids = append(ids, id)
				}
				if _, err := pool.Exec(ctx, `DELETE FROM `+table+` WHERE id = ANY($1)`, ids); err != nil {
					b.Fatal(err)
				}
			}
			took := time.Since(start)
			b.StopTimer()
			wal := walSince(b, pool, from)
			report(b, rows, took, wal, size(b, pool, table))
		}
	})

	b.Run("retention", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			table := schema(b, pool, "retention") + ".outbox"
			st := store(b, pool, table)
			fill(b, pool, table, rows, true)
			before := size(b, pool, table)
			from := lsn(b, pool)
			b.StartTimer()
			start := time.Now()
			var deleted int64
			var slowest time.Duration
			for {
				t0 := time.Now()
				n, err := st.DeletePublished(ctx, time.Hour, 5000)
				if err != nil {
					b.Fatal(err)
				}
				slowest = max(slowest, time.Since(t0))
				deleted += n
				if n < 5000 {
					break
				}
			}
			deleting := time.Since(start)
			exec(b, pool, `VACUUM `+table)
			took := time.Since(start)
			b.StopTimer()
			if deleted != int64(rows) {
				b.Fatalf("deleted %d rows, want %d", deleted, rows)
			}
			wal := walSince(b, pool, from)
			b.ReportMetric(float64(rows)/deleting.Seconds(), "delete-rows/s")
			b.ReportMetric(float64(slowest.Microseconds())/1000, "slowest-batch-ms")
			b.Logf("table %.1f MiB before; deletes alone %s (%.0f rows/s), slowest batch of 5,000 %s, VACUUM %s",
				float64(before)/(1<<20), deleting.Round(time.Millisecond), float64(rows)/deleting.Seconds(),
				slowest.Round(time.Millisecond), (took - deleting).Round(time.Millisecond))
			report(b, rows, took, wal, size(b, pool, table))
		}
	})

	b.Run("partitions", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			s := schema(b, pool, "partitions")
			table := s + ".outbox"
			// The outbox's columns, partitioned by created_at: the primary key must include
			// the partition key, and message_id can be unique only per partition.
			exec(b, pool, `CREATE TABLE `+table+` (
    id           bigint GENERATED ALWAYS AS IDENTITY,
    message_id   uuid        NOT NULL,
    topic        text        NOT NULL,
    key          text,
    type         text        NOT NULL DEFAULT '',
    payload      bytea       NOT NULL DEFAULT '\x',
    headers      jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    available_at timestamptz NOT NULL DEFAULT now(),
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text,
    published_at timestamptz,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at)`)
			exec(b, pool, `CREATE INDEX ON `+table+` (id) WHERE published_at IS NULL`)
			exec(b, pool, `CREATE INDEX ON `+table+` (published_at) WHERE published_at IS NOT NULL`)
			old := s + ".outbox_old"
			exec(b, pool, `CREATE TABLE `+old+` PARTITION OF `+table+` FOR VALUES FROM (now() - interval '1 day') TO (now() - interval '1 hour')`)
			exec(b, pool, `CREATE TABLE `+s+`.outbox_now PARTITION OF `+table+` FOR VALUES FROM (now() - interval '1 hour') TO (now() + interval '1 day')`)
			fill(b, pool, table, rows, true)
			from := lsn(b, pool)
			b.StartTimer()
			start := time.Now()
			conn, err := pool.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			// DETACH … CONCURRENTLY cannot run in a transaction block: the simple protocol
			// sends it on its own.
			if _, err := conn.Conn().Exec(ctx, `ALTER TABLE `+table+` DETACH PARTITION `+old+` CONCURRENTLY`, pgx.QueryExecModeSimpleProtocol); err != nil {
				conn.Release()
				b.Fatal(err)
			}
			conn.Release()
			exec(b, pool, `DROP TABLE `+old)
			took := time.Since(start)
			b.StopTimer()
			wal := walSince(b, pool, from)
			report(b, rows, took, wal, size(b, pool, table))
		}
	})
}
