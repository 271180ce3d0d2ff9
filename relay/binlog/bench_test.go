package binlog_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/internal/mysqltest"
	"github.com/outboxgo/outbox/internal/natstest"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/binlog"
	"github.com/outboxgo/outbox/sink/nats"
)

// countingObserver counts acknowledged messages.
type countingObserver struct{ published atomic.Int64 }

func (o *countingObserver) BatchFinished(_ []outbox.Record, out dialect.Outcome, err error) {
	if err == nil {
		o.published.Add(int64(len(out.Published)))
	}
}

// backlog commits n messages over keys in transactions of 10,000.
func (e *env) backlog(b *testing.B, n, keys int) {
	b.Helper()
	payload := []byte(`{"order_id":"0000000000","customer":"c-42","amount_cents":4200,"currency":"EUR"}`)
	for start := 0; start < n; start += 10000 {
		ms := make([]outbox.Message, min(10000, n-start))
		for i := range ms {
			ms[i] = outbox.Message{Topic: "bench.orders", Key: "k" + strconv.Itoa((start+i)%keys), Payload: payload}
		}
		if err := e.store.Enqueue(context.Background(), ms...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDrain measures how fast one relay on the binlog source moves a 100,000-message
// backlog (committed while the relay was down) from MariaDB into NATS JetStream (file storage,
// PubAck awaited for each message), deleting the acknowledged rows.
//
//	go test -run '^$' -bench BenchmarkDrain -benchtime 3x ./relay/binlog/
func BenchmarkDrain(b *testing.B) {
	const n, keys = 100_000, 1000
	e := setup(b)
	nc := natstest.Connect(b)
	_, prefix := natstest.Stream(b, nc)
	sk, err := nats.New(context.Background(), nats.Config{URL: natstest.URL(), SubjectPrefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sk.Close() })
	cfg := binlog.Config{DSN: mysqltest.DSN(), DB: e.db, Logger: quietLogger()}
	if err := e.source(b, cfg).Setup(context.Background()); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	for range b.N {
		b.StopTimer()
		e.backlog(b, n, keys)
		obs := &countingObserver{}
		src := e.source(b, cfg)
		b.StartTimer()
		start := time.Now()
		r := startRelay(b, src, sk, relay.Config{Observer: obs, Logger: quietLogger()})
		for obs.published.Load() < n {
			time.Sleep(time.Millisecond)
		}
		for e.rows(b) > 0 {
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		b.StopTimer()
		if err := r.stop(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "events/s")
	b.ReportMetric(peakRSSMB(), "peakRSS_MB")
}

// peakRSSMB is the process's peak resident set (VmHWM), relay and producers together.
func peakRSSMB() float64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}
