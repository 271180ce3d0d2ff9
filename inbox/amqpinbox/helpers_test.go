package amqpinbox_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/amqpinbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/internal/testutil/service"
	amqpsink "github.com/outboxgo/outbox/sink/amqp"
)

const defaultURL = "amqp://guest:guest@127.0.0.1:5672/"

func brokerURL() string {
	if u := os.Getenv("RABBITMQ_URL"); u != "" {
		return u
	}
	return defaultURL
}

func uniqueName(what string) string {
	return "amqpinbox-test-" + what + "-" + strings.ReplaceAll(outbox.NewID().String(), "-", "")[20:]
}

// topology is a private topic exchange and a durable queue bound to all of it, deleted
// when the test ends.
type topology struct {
	ch       *amqp091.Channel
	exchange string
	queue    string
	prefix   string
}

func newTopology(t testing.TB) *topology {
	t.Helper()
	service.Require(t, "RabbitMQ")
	conn, err := amqp091.Dial(brokerURL())
	if err != nil {
		t.Fatalf("connecting to RabbitMQ at %s: %v", brokerURL(), err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	tp := &topology{ch: ch, exchange: uniqueName("ex"), queue: uniqueName("q"), prefix: "app."}
	if err := ch.ExchangeDeclare(tp.exchange, "topic", false, false, false, false, nil); err != nil {
		t.Fatalf("declaring exchange: %v", err)
	}
	if _, err := ch.QueueDeclare(tp.queue, true, false, false, false, nil); err != nil {
		t.Fatalf("declaring queue: %v", err)
	}
	if err := ch.QueueBind(tp.queue, "#", tp.exchange, false, nil); err != nil {
		t.Fatalf("binding queue: %v", err)
	}
	t.Cleanup(func() {
		_, _ = ch.QueueDelete(tp.queue, false, false, false)
		_ = ch.ExchangeDelete(tp.exchange, false, false)
	})
	return tp
}

// ready is the number of messages ready in the queue (none unacked by a live consumer).
func (tp *topology) ready(t testing.TB) int {
	t.Helper()
	q, err := tp.ch.QueueDeclarePassive(tp.queue, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return q.Messages
}

func (tp *topology) sink(t testing.TB, source string) *amqpsink.Sink {
	t.Helper()
	s, err := amqpsink.New(context.Background(), amqpsink.Config{URL: brokerURL(), Exchange: tp.exchange,
		RoutingKeyPrefix: tp.prefix, Source: source, Logger: logtest.NewLevel(t, slog.LevelWarn)})
	if err != nil {
		t.Fatalf("sink: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// config is a consumer of tp's queue into in.
func (tp *topology) config(in *inbox.Inbox) amqpinbox.Config {
	return amqpinbox.Config{Inbox: in, URL: brokerURL(), Queue: tp.queue, RoutingKeyPrefix: tp.prefix,
		ReconnectWait: 50 * time.Millisecond, RetentionInterval: -1}
}

func publish(t testing.TB, s *amqpsink.Sink, recs ...*outbox.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, err := range s.Publish(ctx, recs) {
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
}

var seqBase atomic.Int64

// record returns a record of topic and key with an increasing position.
func record(topic, key, payload string) *outbox.Record {
	seqBase.CompareAndSwap(0, time.Now().UnixNano()/1000) // increasing from run to run
	return &outbox.Record{
		Message: outbox.Message{ID: outbox.NewID(), Topic: topic, Key: key, Type: "t", Payload: []byte(payload)},
		Seq:     seqBase.Add(1), CreatedAt: time.Now(),
	}
}

// env is an inbox on a private PostgreSQL schema with an effects table.
type env struct {
	t       testing.TB
	pool    *pgxpool.Pool
	in      *inbox.Inbox
	effects string
}

func newEnv(t testing.TB, cfg inbox.Config) *env {
	t.Helper()
	pool, schema := pgtest.Schema(t)
	cfg.Pool, cfg.Table = pool, schema+".inbox"
	if cfg.Consumer == "" {
		cfg.Consumer = "test"
	}
	if cfg.Logger == nil {
		cfg.Logger = logtest.NewLevel(t, slog.LevelWarn)
	}
	ctx := context.Background()
	in, err := inbox.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		t.Fatal(err)
	}
	effects := pgx.Identifier{schema, "effects"}.Sanitize()
	if _, err := pool.Exec(ctx, `CREATE TABLE `+effects+` (n bigserial PRIMARY KEY, message_id text NOT NULL, key text NOT NULL, payload text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return &env{t: t, pool: pool, in: in, effects: effects}
}

// insert is the handler's effect.
func (e *env) insert(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
	_, err := tx.(pgx.Tx).Exec(ctx, `INSERT INTO `+e.effects+` (message_id, key, payload) VALUES ($1, $2, $3)`, m.ID, m.Key, string(m.Payload))
	return err
}

type effect struct{ id, key, payload string }

// list returns the committed effects in commit order.
func (e *env) list() []effect {
	e.t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT message_id, key, payload FROM `+e.effects+` ORDER BY n`)
	if err != nil {
		e.t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (effect, error) {
		var f effect
		return f, r.Scan(&f.id, &f.key, &f.payload)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// waitEffects waits until there are n effects (at most d), and returns them.
func (e *env) waitEffects(n int, d time.Duration) []effect {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := e.list()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d effects after %v, want %d", len(got), d, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkOnce fails unless recs each have exactly one effect, in order per key.
func checkOnce(t testing.TB, got []effect, recs []*outbox.Record) {
	t.Helper()
	count := map[string]int{}
	for _, f := range got {
		count[f.id]++
	}
	for _, r := range recs {
		if n := count[r.ID.String()]; n != 1 {
			t.Errorf("record %s (key %q): %d effects, want 1", r.ID, r.Key, n)
		}
	}
	if len(got) != len(recs) {
		t.Errorf("%d effects, want %d", len(got), len(recs))
	}
	want := map[string][]string{}
	for _, r := range recs {
		want[r.Key] = append(want[r.Key], r.ID.String())
	}
	have := map[string][]string{}
	for _, f := range got {
		have[f.key] = append(have[f.key], f.id)
	}
	for k, ids := range want {
		if k == "" {
			continue
		}
		if fmt.Sprint(have[k]) != fmt.Sprint(ids) {
			t.Errorf("key %q applied in order %v, want %v", k, have[k], ids)
		}
	}
}

// runner runs a Consumer in the background.
type runner struct {
	cancel context.CancelFunc
	done   chan error
}

func start(t testing.TB, cfg amqpinbox.Config, h inbox.Handler) *runner {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = logtest.NewLevel(t, slog.LevelWarn)
	}
	c, err := amqpinbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx, h) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the consumer and waits for Run to return (nil).
func (r *runner) stop(t testing.TB) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("Run did not return 30s after its context ended")
	}
}
