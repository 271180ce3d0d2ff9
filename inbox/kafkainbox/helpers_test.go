package kafkainbox_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/kafkainbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	kafkasink "github.com/outboxgo/outbox/sink/kafka"
)

// fastGroup makes rebalances take milliseconds instead of seconds.
var fastGroup = []kgo.Opt{
	kgo.HeartbeatInterval(100 * time.Millisecond),
	kgo.SessionTimeout(3 * time.Second),
	kgo.RebalanceTimeout(5 * time.Second),
	kgo.FetchMaxWait(200 * time.Millisecond),
}

func newCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(time.Second)}, opts...)...)
	if err != nil {
		t.Fatalf("starting kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

var nameSeq atomic.Int64

func uniqueName(base string) string {
	return fmt.Sprintf("kafkainbox-%s-%d-%d", base, time.Now().UnixNano()%1e6, nameSeq.Add(1))
}

func adminClient(t testing.TB, c *kfake.Cluster) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func createTopic(t testing.TB, c *kfake.Cluster, name string, partitions int32) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = name, partitions, 1
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, adminClient(t, c))
	if err != nil {
		t.Fatalf("creating topic %s: %v", name, err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("creating topic %s: %v", name, err)
	}
}

// committed returns the group's committed offset of topic's partition (-1: none).
func committed(t testing.TB, c *kfake.Cluster, group, topic string, partition int32) int64 {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = topic, []int32{partition}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, adminClient(t, c))
	if err != nil {
		t.Fatalf("fetching offsets: %v", err)
	}
	for _, rt := range resp.Topics {
		for _, p := range rt.Partitions {
			if p.Partition == partition {
				return p.Offset
			}
		}
	}
	return -1
}

func newSink(t testing.TB, c *kfake.Cluster, source string) *kafkasink.Sink {
	t.Helper()
	return newSinkPrefix(t, c, source, "")
}

func newSinkPrefix(t testing.TB, c *kfake.Cluster, source, prefix string) *kafkasink.Sink {
	t.Helper()
	s, err := kafkasink.New(context.Background(), kafkasink.Config{
		Brokers: c.ListenAddrs(), Source: source, TopicPrefix: prefix, Logger: logtest.NewLevel(t, slog.LevelWarn),
	})
	if err != nil {
		t.Fatalf("sink: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func publish(t testing.TB, s *kafkasink.Sink, recs ...*outbox.Record) {
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

func start(t testing.TB, cfg kafkainbox.Config, h inbox.Handler) *runner {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = logtest.NewLevel(t, slog.LevelWarn)
	}
	cfg.ClientOptions = append(append([]kgo.Opt{}, fastGroup...), cfg.ClientOptions...)
	c, err := kafkainbox.New(cfg)
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

// cutter wraps kfake's listeners so that a test can sever every connection from the broker
// side, as a broker crash or a network cut looks to the client.
type cutter struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newCutter() *cutter { return &cutter{conns: map[net.Conn]struct{}{}} }

func (c *cutter) listen(network, address string) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return &cutListener{Listener: ln, c: c}, nil
}

func (c *cutter) cut() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.conns)
	for conn := range c.conns {
		_ = conn.Close()
		delete(c.conns, conn)
	}
	return n
}

type cutListener struct {
	net.Listener
	c *cutter
}

func (l *cutListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.c.mu.Lock()
		l.c.conns[conn] = struct{}{}
		l.c.mu.Unlock()
	}
	return conn, err
}
