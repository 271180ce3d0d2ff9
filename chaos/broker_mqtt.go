package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/relay"
)

// ---- MQTT: a private topic tree on a Mosquitto of the run's own, or a shared one ----

type mqttBroker struct {
	addr   string
	own    *exec.Cmd // the run's own Mosquitto, nil on a shared one
	px     *faultproxy.Proxy
	prefix string // MQTT topic = prefix + topic
	client string // the consumer's client identifier (its session outlives reconnects)

	inboxSession bool // the consumers' session exists: close ends it
}

// startMQTT connects to the broker at addr; with addr "", it starts a Mosquitto of the run's
// own in dir (see Config.MQTTAddr), or uses 127.0.0.1:1883 when there is no mosquitto binary.
func startMQTT(addr, dir, name string) (*mqttBroker, error) {
	b := &mqttBroker{addr: addr, prefix: name + "/", client: name + "-consumer"}
	if addr == "" {
		var err error
		if b.addr, b.own, err = startMosquitto(dir); err != nil {
			return nil, err
		}
	}
	c, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connecting to the MQTT broker at %s: %w", addr, err)
	}
	_ = c.Close()
	if b.px, err = startProxy(b.addr); err != nil {
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
	// End the consumers' sessions: a clean start with no expiry, then a disconnect.
	b.endSession(b.client)
	if b.inboxSession {
		b.endSession(b.inboxClient())
	}
	if b.own != nil {
		_ = b.own.Process.Kill()
		_ = b.own.Wait()
	}
}

// startMosquitto starts a Mosquitto listening on a free loopback port, its persistence and
// configuration in dir, and returns its address; without a mosquitto binary, it returns the
// shared broker's address and no process.
func startMosquitto(dir string) (string, *exec.Cmd, error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		return "127.0.0.1:1883", nil, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	body := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\n"+
		"max_queued_messages 0\nlog_dest file %s\n", port, dir, filepath.Join(dir, "mosquitto.log"))
	if os.Geteuid() == 0 {
		body += "user root\n" // Mosquitto started as root switches to the user "mosquitto" otherwise
	}
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		return "", nil, err
	}
	cmd := exec.Command(bin, "-c", conf)
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("starting mosquitto: %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return addr, cmd, nil
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return "", nil, fmt.Errorf("mosquitto did not listen on %s within 10s: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (b *mqttBroker) endSession(clientID string) {
	nc, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
	if err != nil {
		return
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, CleanStart: true}); err != nil {
		_ = nc.Close()
		return
	}
	_ = c.Disconnect(&paho.Disconnect{})
}

// inboxClient is the client id of the consumers' persistent session.
func (b *mqttBroker) inboxClient() string { return b.prefix[:len(b.prefix)-1] + "-inbox" }

// inboxSetup creates the consumer process's session and its QoS 1 subscription before
// anything is published (MQTT keeps nothing for a subscription that does not exist yet); the
// adapter resumes the session.
func (b *mqttBroker) inboxSetup(ctx context.Context, _ int) (func(int) map[string]string, error) {
	nc, err := net.DialTimeout("tcp", b.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	expiry := uint32(3600)
	if _, err := c.Connect(cctx, &paho.Connect{ClientID: b.inboxClient(), CleanStart: true, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("creating the consumers' session: %w", err)
	}
	b.inboxSession = true
	defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
	sa, err := c.Subscribe(cctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: b.prefix + "#", QoS: 1}}})
	if err != nil {
		return nil, fmt.Errorf("subscribing the consumers' session: %w", err)
	}
	if len(sa.Reasons) != 1 || sa.Reasons[0] != 1 {
		return nil, fmt.Errorf("subscribing the consumers' session: SUBACK %v, want granted QoS 1", sa.Reasons)
	}
	return func(int) map[string]string {
		return map[string]string{"broker": "tcp://" + b.px.Addr(), "client_id": b.inboxClient(), "topic_prefix": b.prefix}
	}, nil
}

// inboxProcesses: one. A shared subscription spreads a key's messages over its consumers
// without regard to keys, and a second session would get every message too.
func (b *mqttBroker) inboxProcesses(int) int { return 1 }

func (b *mqttBroker) inboxNotes(int) []string {
	return []string{"consumers (MQTT): one mqttinbox process on a persistent session of its own (QoS 1, created before the load, Receive Maximum 65535), through the broker's fault proxy: a key's messages are applied in the order the broker delivers them on the subscription; several processes would need a shared subscription, which spreads a key's messages without regard to keys, so one process runs (killed and restarted on the same session)."}
}

func (b *mqttBroker) seesHeaders() bool { return false }

func (b *mqttBroker) notes() []string {
	where := "a Mosquitto of the run's own (max_queued_messages 0)"
	if b.own == nil {
		where = "the Mosquitto at " + b.addr
	}
	return []string{"MQTT: " + where + " is never restarted: no broker-restart; broker-cut (every relay connection cut at a fault proxy, new ones refused for the outage) stands in for it. The consumer holds a QoS 1 subscription to a private topic tree on a session that outlives reconnects."}
}
