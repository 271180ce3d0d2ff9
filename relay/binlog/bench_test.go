package binlog_test

import (
	"context"
	"testing"

	"github.com/outboxgo/outbox/internal/mysqltest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/binlog"
	"github.com/outboxgo/outbox/relay/internal/sourcetest"
)

// benchConfig is the source configuration of the benchmarks: defaults, quiet logs.
func (e *env) benchConfig() binlog.Config {
	return binlog.Config{DSN: mysqltest.DSN(), DB: e.db, Logger: sourcetest.QuietLogger()}
}

// BenchmarkDrain measures how fast one relay on the binlog source moves a
// 100,000-message backlog (committed while the relay was down) from MariaDB into NATS
// JetStream (file storage, PubAck awaited for each message), deleting the acknowledged rows.
//
//	go test -run '^$' -bench BenchmarkDrain -benchtime 3x ./relay/binlog/
func BenchmarkDrain(b *testing.B) {
	const n, keys = 100_000, 1000
	e := setup(b)
	sk := sourcetest.NATSSink(b)
	if err := e.source(b, e.benchConfig()).Setup(context.Background()); err != nil {
		b.Fatal(err)
	}
	sourcetest.Drain(b, n, sk,
		func() {
			for _, ms := range sourcetest.BacklogMessages(n, keys) {
				e.commit(b, ms...)
			}
		},
		func() relay.Source { return e.source(b, e.benchConfig()) },
		func() bool { return e.rows(b) == 0 })
}
