package mqttinbox_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/jackc/pgx/v5"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
)

// BenchmarkConsume: b.N messages pre-filled into a persistent session on a private
// Mosquitto (no queue limit), then consumed into PostgreSQL: through the inbox (one
// transaction per message, or per Batch), or by a plain loop (manual ack after the commit of
// one INSERT per message, or per batch) without the inbox.
func BenchmarkConsume(b *testing.B) {
	m := startMosquitto(b)
	for _, batch := range []int{1, 16} {
		b.Run(fmt.Sprintf("inbox/batch=%d", batch), func(b *testing.B) {
			s := newSession(b, m.addr)
			e := newEnv(b, inbox.Config{})
			publish(b, s.sink(b), records(make([]string, b.N)...))
			var n atomic.Int64
			done := make(chan struct{})
			cfg := s.config(e.in)
			cfg.Batch, cfg.ReceiveMaximum = batch, 1000
			cfg.Logger = logtest.NewLevel(b, slog.LevelWarn)
			b.ResetTimer()
			begin := time.Now()
			r := start(b, cfg, func(ctx context.Context, tx outbox.Tx, msg inbox.Message) error {
				if err := e.insert(ctx, tx, msg); err != nil {
					return err
				}
				if n.Add(1) == int64(b.N) {
					close(done)
				}
				return nil
			})
			<-done
			b.ReportMetric(float64(b.N)/time.Since(begin).Seconds(), "msgs/s")
			b.StopTimer()
			_ = r.stop()
		})
		b.Run(fmt.Sprintf("plain/batch=%d", batch), func(b *testing.B) {
			s := newSession(b, m.addr)
			e := newEnv(b, inbox.Config{})
			publish(b, s.sink(b), records(make([]string, b.N)...))
			b.ResetTimer()
			begin := time.Now()
			plain(b, s, e, batch)
			b.ReportMetric(float64(b.N)/time.Since(begin).Seconds(), "msgs/s")
		})
	}
}

// plain consumes b.N messages with a paho client and manual acks, batch messages per
// transaction of INSERTs, acked after the commit.
func plain(b *testing.B, s session, e *env, batch int) {
	msgs := make(chan *paho.Publish, 1000)
	nc, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc, EnableManualAcknowledgment: true, SendAcksInterval: 5 * time.Millisecond,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			msgs <- pr.Packet
			return true, nil
		}}})
	ctx := context.Background()
	expiry, recv := uint32(300), uint16(1000)
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: s.clientID, KeepAlive: 30,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, ReceiveMaximum: &recv}}); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = c.Disconnect(&paho.Disconnect{}) }()
	for got := 0; got < b.N; {
		ps := []*paho.Publish{<-msgs}
	fill:
		for len(ps) < batch {
			select {
			case p := <-msgs:
				ps = append(ps, p)
			default:
				break fill
			}
		}
		err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
			for _, p := range ps {
				var id string
				for _, u := range p.Properties.User {
					if u.Key == "id" {
						id = u.Value
					}
				}
				if _, err := tx.Exec(ctx, `INSERT INTO `+e.effects+` (message_id, key) VALUES ($1, '')`, id); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, p := range ps {
			_ = c.Ack(p)
		}
		got += len(ps)
	}
}
