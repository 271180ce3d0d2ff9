package mqttinbox_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/mqttinbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/internal/testutil/service"
	mqttsink "github.com/outboxgo/outbox/sink/mqtt"
)

const sharedBroker = "127.0.0.1:1883"

func brokerAddr(tb testing.TB) string {
	tb.Helper()
	service.Require(tb, "Mosquitto (MQTT)")
	if u := os.Getenv("MQTT_ADDR"); u != "" {
		return u
	}
	return sharedBroker
}

// unique returns a name no other test uses.
func unique(prefix string) string {
	return prefix + strings.ReplaceAll(outbox.NewID().String(), "-", "")[16:]
}

// env is an inbox on a private PostgreSQL schema with an effects table.
type env struct {
	pool    *pgxpool.Pool
	in      *inbox.Inbox
	effects string
}

func newEnv(tb testing.TB, cfg inbox.Config) *env {
	tb.Helper()
	pool, schema := pgtest.Schema(tb)
	ctx := context.Background()
	cfg.Pool, cfg.Table = pool, schema+".inbox"
	if cfg.Consumer == "" {
		cfg.Consumer = "mqtt-test"
	}
	in, err := inbox.New(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := in.MigrateUp(ctx); err != nil {
		tb.Fatal(err)
	}
	e := &env{pool: pool, in: in, effects: pgx.Identifier{schema, "effects"}.Sanitize()}
	if _, err := pool.Exec(ctx, `CREATE TABLE `+e.effects+` (n bigserial, message_id text NOT NULL, key text NOT NULL)`); err != nil {
		tb.Fatal(err)
	}
	return e
}

// insert is a handler's effect.
func (e *env) insert(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
	_, err := tx.(pgx.Tx).Exec(ctx, `INSERT INTO `+e.effects+` (message_id, key) VALUES ($1, $2)`, m.ID, m.Key)
	return err
}

// applied returns the message ids of the effects, in commit order.
func (e *env) applied(tb testing.TB) []string {
	tb.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT message_id FROM `+e.effects+` ORDER BY n`)
	if err != nil {
		tb.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		tb.Fatal(err)
	}
	return ids
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, what string, timeout time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEffects waits until every id has an effect.
func (e *env) waitEffects(tb testing.TB, timeout time.Duration, ids ...string) {
	tb.Helper()
	waitFor(tb, fmt.Sprintf("%d effects", len(ids)), timeout, func() bool {
		got := map[string]bool{}
		for _, id := range e.applied(tb) {
			got[id] = true
		}
		for _, id := range ids {
			if !got[id] {
				return false
			}
		}
		return true
	})
}

// session is a private topic prefix and client id on a broker, with the persistent session
// made (subscribed) before anything is published, as a deployed consumer's is.
type session struct {
	addr, prefix, clientID string
}

func newSession(tb testing.TB, addr string) session {
	tb.Helper()
	s := session{addr: addr, prefix: unique("outbox-inbox-test/") + "/", clientID: unique("mqttinbox-")}
	s.connect(tb, false, 300, func(ctx context.Context, c *paho.Client) {
		sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: s.prefix + "#", QoS: 1}}})
		if err != nil || sa.Reasons[0] != 1 {
			tb.Fatalf("SUBSCRIBE: %v %v", err, sa)
		}
	}, nil)
	tb.Cleanup(func() { s.connect(tb, true, 0, nil, nil) }) // ends the session
	return s
}

// connect opens a raw MQTT 5 connection with the session's client id, runs do and
// disconnects. onPublish, when set, receives the messages (acknowledged by paho).
func (s session) connect(tb testing.TB, clean bool, expiry uint32, do func(context.Context, *paho.Client), onPublish func(*paho.Publish)) {
	tb.Helper()
	nc, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		tb.Fatalf("dialing the MQTT broker at %s: %v", s.addr, err)
	}
	cfg := paho.ClientConfig{Conn: nc}
	if onPublish != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			onPublish(pr.Packet)
			return true, nil
		}}
	}
	c := paho.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: s.clientID, CleanStart: clean, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil || ca.ReasonCode != 0 {
		tb.Fatalf("CONNECT: %v %v", err, ca)
	}
	if do != nil {
		do(ctx, c)
	}
	_ = c.Disconnect(&paho.Disconnect{})
}

func (s session) sink(tb testing.TB) *mqttsink.Sink {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sk, err := mqttsink.New(ctx, mqttsink.Config{Broker: "tcp://" + s.addr, TopicPrefix: s.prefix,
		ClientID: unique("mqttinbox-sink-"), Source: "mqttinbox-test", Logger: logtest.NewLevel(tb, slog.LevelWarn)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sk.Close() })
	return sk
}

func (s session) config(in *inbox.Inbox) mqttinbox.Config {
	return mqttinbox.Config{Inbox: in, Broker: "tcp://" + s.addr, ClientID: s.clientID, TopicPrefix: s.prefix}
}

// records makes messages of topic "orders.events" with the given keys.
func records(keys ...string) []*outbox.Record {
	recs := make([]*outbox.Record, len(keys))
	seq := time.Now().UnixNano() / 1000
	for i, k := range keys {
		recs[i] = &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: "orders.events", Key: k,
			Type: "order.noted", Payload: fmt.Appendf(nil, `{"i":%d}`, i)}, Seq: seq + int64(i), CreatedAt: time.Now().UTC()}
	}
	return recs
}

func publish(tb testing.TB, sk *mqttsink.Sink, recs []*outbox.Record) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, err := range sk.Publish(ctx, recs) {
		if err != nil {
			tb.Fatalf("publish %d: %v", i, err)
		}
	}
}

func ids(recs []*outbox.Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.ID.String()
	}
	return out
}

// running is a Consumer's Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func start(tb testing.TB, cfg mqttinbox.Config, h inbox.Handler) *running {
	tb.Helper()
	if cfg.Logger == nil {
		cfg.Logger = logtest.New(tb)
	}
	c, err := mqttinbox.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx, h) }()
	tb.Cleanup(func() {
		if err := r.stop(); err != nil {
			tb.Errorf("Run: %v", err)
		}
	})
	return r
}

// stop cancels Run and returns its error.
func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		r.err = <-r.done
	})
	return r.err
}

// mosquitto is a private broker, for the tests that restart it.
type mosquitto struct {
	tb   testing.TB
	conf string
	addr string
	cmd  *exec.Cmd
}

func startMosquitto(tb testing.TB) *mosquitto {
	tb.Helper()
	service.Require(tb, "mosquitto (the binary)")
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		tb.Fatalf("mosquitto binary: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	dir := tb.TempDir()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "mosquitto.conf")
	body := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\nmax_queued_messages 0\nlog_dest none\nuser root\n", port, dir)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
	m := &mosquitto{tb: tb, conf: conf, addr: addr}
	m.start(bin)
	tb.Cleanup(m.stop)
	return m
}

func (m *mosquitto) start(bin string) {
	m.tb.Helper()
	m.cmd = exec.Command(bin, "-c", m.conf)
	if err := m.cmd.Start(); err != nil {
		m.tb.Fatalf("starting mosquitto: %v", err)
	}
	waitFor(m.tb, "mosquitto to listen", 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", m.addr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
}

// stop ends the broker with SIGTERM (it saves its persistent state) and waits for it.
func (m *mosquitto) stop() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(os.Interrupt)
	_ = m.cmd.Wait()
	m.cmd = nil
}

func (m *mosquitto) restart() {
	m.tb.Helper()
	m.stop()
	bin, _ := exec.LookPath("mosquitto")
	m.start(bin)
}

// checkKeyOrder reports each of keys whose messages in got (applied ids, in order) are not
// those of recs, in recs' order.
func checkKeyOrder(tb testing.TB, got []string, recs []*outbox.Record, keys ...string) {
	tb.Helper()
	for _, key := range keys {
		var want, have []string
		for _, r := range recs {
			if r.Key == key {
				want = append(want, r.ID.String())
			}
		}
		for _, id := range got {
			if slices.Contains(want, id) {
				have = append(have, id)
			}
		}
		if !slices.Equal(have, want) {
			tb.Errorf("key %s applied as %v, want %v", key, have, want)
		}
	}
}
