package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/relay"
)

// ---- Redis Streams: a private stream on the shared server ----

type redisBroker struct {
	addr   string
	px     *faultproxy.Proxy
	prefix string // stream key = prefix + topic
	client *redis.Client
}

func startRedis(addr, name string) (*redisBroker, error) {
	b := &redisBroker{addr: addr, prefix: name + ":"}
	b.client = redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.client.Ping(ctx).Err(); err != nil {
		_ = b.client.Close()
		return nil, fmt.Errorf("connecting to Redis at %s: %w", addr, err)
	}
	var err error
	if b.px, err = startProxy(addr); err != nil {
		_ = b.client.Close()
		return nil, err
	}
	return b, nil
}

func (b *redisBroker) stream() string { return b.prefix + outboxTopic }

func (b *redisBroker) relayEnv() []string {
	return []string{
		"OUTBOX_SINK_TYPE=redis",
		"OUTBOX_SINK_REDIS_ADDR=" + b.px.Addr(),
		"OUTBOX_SINK_REDIS_STREAM_PREFIX=" + b.prefix,
		"OUTBOX_SINK_REDIS_PUBLISH_TIMEOUT=5s",
	}
}

// consume reads the stream from its start with XREAD, in entry order.
func (b *redisBroker) consume(ctx context.Context, deliver func(delivery)) {
	_ = b.read(ctx, "0", "", deliver)
}

// read delivers the stream's entries after the entry id from until ctx ends or, when upTo is
// set, up to that entry id.
func (b *redisBroker) read(ctx context.Context, from, upTo string, deliver func(delivery)) error {
	last := from
	for ctx.Err() == nil {
		res, err := b.client.XRead(ctx, &redis.XReadArgs{Streams: []string{b.stream(), last}, Count: 1000, Block: time.Second}).Result()
		if errors.Is(err, redis.Nil) {
			if upTo != "" {
				return nil
			}
			continue
		}
		if err != nil {
			_ = relay.Sleep(ctx, 200*time.Millisecond)
			continue
		}
		for _, s := range res {
			for _, m := range s.Messages {
				last = m.ID
				id, _ := m.Values["id"].(string)
				data, _ := m.Values["data"].(string)
				deliver(delivery{id: id, payload: []byte(data), at: time.Now()})
				if m.ID == upTo {
					return nil
				}
			}
		}
	}
	return ctx.Err()
}

func (b *redisBroker) restart(context.Context, time.Duration) error { return errNoRestart }
func (b *redisBroker) canRestart() bool                             { return false }
func (b *redisBroker) cut()                                         { b.px.Cut() }
func (b *redisBroker) restore()                                     { b.px.Restore() }

func (b *redisBroker) sweep(ctx context.Context, fn func(delivery)) error {
	last, err := b.client.XRevRangeN(ctx, b.stream(), "+", "-", 1).Result()
	if err != nil {
		return err
	}
	if len(last) == 0 {
		return nil
	}
	return b.read(ctx, "0", last[0].ID, fn)
}

func (b *redisBroker) close() {
	if b.px != nil {
		b.px.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.client.Del(ctx, b.stream()).Err()
	_ = b.client.Close()
}

func (b *redisBroker) seesHeaders() bool { return false }

func (b *redisBroker) notes() []string {
	return []string{"Redis: the shared server is never restarted: no broker-restart; broker-cut (every relay connection cut at a fault proxy, new ones refused for the outage) stands in for it. The consumer reads a private stream with XREAD; the stream is deleted at the end."}
}

// ---- MQTT: a private topic tree on the shared Mosquitto ----

type mqttBroker struct {
	addr   string
	px     *faultproxy.Proxy
	prefix string // MQTT topic = prefix + topic
	client string // the consumer's client identifier (its session outlives reconnects)
}

func startMQTT(addr, name string) (*mqttBroker, error) {
	b := &mqttBroker{addr: addr, prefix: name + "/", client: name + "-consumer"}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connecting to the MQTT broker at %s: %w", addr, err)
	}
	_ = c.Close()
	if b.px, err = startProxy(addr); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *mqttBroker) relayEnv() []string {
	return []string{
		"OUTBOX_SINK_TYPE=mqtt",
		"OUTBOX_SINK_MQTT_BROKER=tcp://" + b.px.Addr(),
		"OUTBOX_SINK_MQTT_TOPIC_PREFIX=" + b.prefix,
		"OUTBOX_SINK_MQTT_PUBLISH_TIMEOUT=5s",
		"OUTBOX_SINK_MQTT_RECONNECT_WAIT=100ms",
	}
}

// consume subscribes at QoS 1 on a session that outlives a dropped connection (the broker
// keeps its messages meanwhile), with Receive Maximum 65535 so that the broker keeps messages
// in flight to it rather than queueing them (Mosquitto drops what exceeds max_queued_messages).
func (b *mqttBroker) consume(ctx context.Context, deliver func(delivery)) {
	first := true
	for ctx.Err() == nil {
		if err := b.consumeOnce(ctx, first, deliver); err == nil {
			first = false
		}
		_ = relay.Sleep(ctx, 200*time.Millisecond)
	}
}

func (b *mqttBroker) consumeOnce(ctx context.Context, clean bool, deliver func(delivery)) error {
	nc, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
	if err != nil {
		return err
	}
	gone := make(chan struct{})
	var once sync.Once
	c := paho.NewClient(paho.ClientConfig{
		Conn: nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			p := pr.Packet
			var id string
			if p.Properties != nil {
				id = p.Properties.User.Get("id")
			}
			deliver(delivery{id: id, payload: p.Payload, at: time.Now()})
			return true, nil
		}},
		OnClientError:      func(error) { once.Do(func() { close(gone) }) },
		OnServerDisconnect: func(*paho.Disconnect) { once.Do(func() { close(gone) }) },
	})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	recvMax, expiry := uint16(65535), uint32(600)
	ca, err := c.Connect(cctx, &paho.Connect{
		ClientID:   b.client,
		KeepAlive:  30,
		CleanStart: clean,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &recvMax, SessionExpiryInterval: &expiry},
	})
	if err != nil {
		_ = nc.Close()
		return err
	}
	defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
	if ca.ReasonCode != 0 {
		return fmt.Errorf("CONNACK reason code %d", ca.ReasonCode)
	}
	if clean {
		sa, err := c.Subscribe(cctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: b.prefix + "#", QoS: 1}}})
		if err != nil {
			return err
		}
		if len(sa.Reasons) != 1 || sa.Reasons[0] != 1 {
			return fmt.Errorf("SUBACK %v, want granted QoS 1", sa.Reasons)
		}
	}
	select {
	case <-ctx.Done():
	case <-gone:
	}
	return nil
}

func (b *mqttBroker) restart(context.Context, time.Duration) error { return errNoRestart }
func (b *mqttBroker) canRestart() bool                             { return false }
func (b *mqttBroker) cut()                                         { b.px.Cut() }
func (b *mqttBroker) restore()                                     { b.px.Restore() }

func (b *mqttBroker) sweep(context.Context, func(delivery)) error { return errNoSweep }

func (b *mqttBroker) close() {
	if b.px != nil {
		b.px.Close()
	}
	// End the consumer's session: a clean start with no expiry, then a disconnect.
	nc, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
	if err != nil {
		return
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: b.client, CleanStart: true}); err != nil {
		_ = nc.Close()
		return
	}
	_ = c.Disconnect(&paho.Disconnect{})
}

func (b *mqttBroker) seesHeaders() bool { return false }

func (b *mqttBroker) notes() []string {
	return []string{"MQTT: the shared Mosquitto is never restarted: no broker-restart; broker-cut (every relay connection cut at a fault proxy, new ones refused for the outage) stands in for it. The consumer holds a QoS 1 subscription to a private topic tree on a session that outlives reconnects."}
}

// ---- Webhooks: an HTTP receiver the run owns ----

type webhookBroker struct {
	px *faultproxy.Proxy

	mu      sync.Mutex
	addr    string // the receiver's listening address, the same after a restart
	srv     *http.Server
	deliver func(delivery)
	ready   chan struct{} // closed once consume set deliver
}

func startWebhook() (*webhookBroker, error) {
	b := &webhookBroker{ready: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.addr = ln.Addr().String()
	b.serve(ln)
	if b.px, err = startProxy(b.addr); err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

func (b *webhookBroker) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(b.handle), ReadHeaderTimeout: 10 * time.Second}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// handle records a request as a delivery once its body was read whole, and acknowledges it.
func (b *webhookBroker) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.Header.Get("webhook-id")
	if id == "" {
		id = r.Header.Get("ce-id")
	}
	select {
	case <-b.ready:
	case <-r.Context().Done():
		return
	}
	b.deliver(delivery{id: id, payload: body, at: time.Now(), headers: r.Header})
	w.WriteHeader(http.StatusNoContent)
}

func (b *webhookBroker) relayEnv() []string {
	return []string{
		"OUTBOX_SINK_TYPE=webhook",
		"OUTBOX_SINK_WEBHOOK_URL=http://" + b.px.Addr() + "/events",
		"OUTBOX_SINK_WEBHOOK_TIMEOUT=5s",
	}
}

// consume hands the receiver's requests to deliver until ctx ends.
func (b *webhookBroker) consume(ctx context.Context, deliver func(delivery)) {
	b.deliver = deliver
	close(b.ready)
	<-ctx.Done()
}

// restart closes the receiver (listener and open connections), keeps the port closed for
// down, and listens on it again.
func (b *webhookBroker) restart(ctx context.Context, down time.Duration) error {
	b.stop()
	_ = relay.Sleep(ctx, down)
	var ln net.Listener
	var err error
	for range 50 { // the port may linger briefly
		if ln, err = net.Listen("tcp", b.addr); err == nil {
			b.serve(ln)
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("listening again on %s: %w", b.addr, err)
}

func (b *webhookBroker) stop() {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

func (b *webhookBroker) canRestart() bool { return true }
func (b *webhookBroker) cut()             { b.px.Cut() }
func (b *webhookBroker) restore()         { b.px.Restore() }

func (b *webhookBroker) sweep(context.Context, func(delivery)) error { return errNoSweep }

func (b *webhookBroker) close() {
	if b.px != nil {
		b.px.Close()
	}
	b.stop()
}

func (b *webhookBroker) seesHeaders() bool { return true }

func (b *webhookBroker) notes() []string {
	return []string{"Webhooks: an in-process HTTP receiver answering 204 to every request; broker-restart = close its listener and connections, then listen on the same port again; the relays reach it through a fault proxy (broker-cut)."}
}
