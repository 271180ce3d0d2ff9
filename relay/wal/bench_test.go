package wal_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/wal"
)

// benchConfig is the source configuration of the benchmarks: defaults, quiet logs.
func (e *env) benchConfig() wal.Config {
	return wal.Config{ConnString: pgtest.URL(), Pool: e.pool, Mode: e.mode, Table: e.table, SlotName: e.slot,
		MessagePrefix: e.prefix, Logger: slog.New(slog.DiscardHandler)}
}

// BenchmarkDrainWAL measures how fast one relay on the WAL source moves a 100,000-message
// backlog (committed while the relay was down) from PostgreSQL into NATS JetStream (file
// storage, PubAck awaited for each message), in both storage modes. Table mode includes
// deleting the acknowledged rows.
func BenchmarkDrainWAL(b *testing.B) {
	const n, keys = 100_000, 1000
	for _, mode := range modes {
		b.Run("mode="+string(mode), func(b *testing.B) {
			e := setup(b, mode)
			sk := sourcetest.NATSSink(b)
			if err := e.source(b, e.benchConfig()).Setup(context.Background()); err != nil {
				b.Fatal(err)
			}
			var settled func() bool
			if mode == wal.ModeTable {
				settled = func() bool { return e.rows(b) == 0 }
			}
			sourcetest.Drain(b, n, keys, sk, e.commit,
				func() relay.Source { return e.source(b, e.benchConfig()) },
				settled)
		})
	}
}

// BenchmarkSteadyLatencyWAL commits 1,000 events/s (four producers, one message per
// transaction) for OUTBOX_BENCH_SECONDS (default 10) and reports commit→PubAck latency.
func BenchmarkSteadyLatencyWAL(b *testing.B) {
	for _, mode := range modes {
		b.Run("mode="+string(mode), func(b *testing.B) {
			e := setup(b, mode)
			sourcetest.SteadyLatency(b, sourcetest.NATSSink(b),
				func() *wal.Source { return e.source(b, e.benchConfig()) },
				func(s *wal.Source) bool { return s.Stats().Streaming },
				func(ctx context.Context, m outbox.Message) error {
					return pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error { return e.enqueue(ctx, tx, m) })
				})
		})
	}
}
