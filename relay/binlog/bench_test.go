package binlog_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/mysqltest"
	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/binlog"
)

// benchConfig is the source configuration of the benchmarks: defaults, quiet logs.
func (e *env) benchConfig() binlog.Config {
	return binlog.Config{DSN: mysqltest.DSN(), DB: e.db, Logger: slog.New(slog.DiscardHandler)}
}

// BenchmarkDrainBinlog measures how fast one relay on the binlog source moves a
// 100,000-message backlog (committed while the relay was down) from MariaDB into NATS
// JetStream (file storage, PubAck awaited for each message), deleting the acknowledged rows.
//
//	go test -run '^$' -bench BenchmarkDrainBinlog -benchtime 3x ./relay/binlog/
func BenchmarkDrainBinlog(b *testing.B) {
	const n, keys = 100_000, 1000
	e := setup(b)
	sk := sourcetest.NATSSink(b)
	if err := e.source(b, e.benchConfig()).Setup(context.Background()); err != nil {
		b.Fatal(err)
	}
	sourcetest.Drain(b, n, keys, sk, e.commit,
		func() relay.Source { return e.source(b, e.benchConfig()) },
		func() bool { return e.rows(b) == 0 })
}

// BenchmarkSteadyLatencyBinlog commits 1,000 events/s (four producers, one message per
// transaction) for OUTBOX_BENCH_SECONDS (default 10) and reports commit→PubAck latency: the
// workload of BenchmarkSteadyLatencyWAL, on MariaDB.
func BenchmarkSteadyLatencyBinlog(b *testing.B) {
	e := setup(b)
	sourcetest.SteadyLatency(b, sourcetest.NATSSink(b),
		func() *binlog.Source { return e.source(b, e.benchConfig()) },
		func(s *binlog.Source) bool { return s.Stats().Streaming },
		func(ctx context.Context, m outbox.Message) error { return e.store.Enqueue(ctx, m) })
}
