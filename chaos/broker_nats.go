package chaos

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/relay"
)

// ---- NATS JetStream: an in-process server the run owns ----

const (
	natsStream = "CHAOS"
	natsPrefix = "chaos."
)

type natsBroker struct {
	opts *server.Options
	px   *faultproxy.Proxy

	mu  sync.Mutex
	srv *server.Server
}

func startNATS(storeDir string) (*natsBroker, error) {
	b := &natsBroker{opts: &server.Options{
		ServerName: "outbox-chaos",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   storeDir,
		NoLog:      true,
		NoSigs:     true,
	}}
	if err := b.start(); err != nil {
		return nil, err
	}
	// Restarts reuse the port, so that clients come back to the same address.
	b.opts.Port = b.srv.Addr().(*net.TCPAddr).Port
	px, err := startProxy(b.addr())
	if err != nil {
		b.close()
		return nil, err
	}
	b.px = px
	nc, err := natsgo.Connect(b.url(), natsgo.Name("outbox-chaos-setup"))
	if err != nil {
		b.close()
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.close()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: natsStream, Subjects: []string{natsPrefix + ">"}, Storage: jetstream.FileStorage,
	}); err != nil {
		b.close()
		return nil, fmt.Errorf("creating stream: %w", err)
	}
	return b, nil
}

func (b *natsBroker) start() error {
	srv, err := server.NewServer(b.opts.Clone())
	if err != nil {
		return fmt.Errorf("starting NATS: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("starting NATS: not ready within 10s on port %d", b.opts.Port)
	}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	return nil
}

func (b *natsBroker) stop() {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

func (b *natsBroker) addr() string { return net.JoinHostPort(b.opts.Host, strconv.Itoa(b.opts.Port)) }
func (b *natsBroker) url() string  { return "nats://" + b.addr() }

func (b *natsBroker) relayEnv() []string {
	return []string{
		"OUTBOX_SINK_TYPE=nats",
		"OUTBOX_SINK_NATS_URL=nats://" + b.px.Addr(),
		"OUTBOX_SINK_NATS_SUBJECT_PREFIX=" + natsPrefix,
		"OUTBOX_SINK_NATS_RECONNECT_WAIT=100ms",
	}
}

func (b *natsBroker) connect() (*natsgo.Conn, jetstream.JetStream, error) {
	nc, err := natsgo.Connect(b.url(), natsgo.Name("outbox-chaos-consumer"),
		natsgo.MaxReconnects(-1), natsgo.ReconnectWait(100*time.Millisecond))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// consume reads the stream with an ordered consumer, recreating it from the last stream
// sequence it saw whenever it fails (the server restarts under it).
func (b *natsBroker) consume(ctx context.Context, deliver func(delivery)) {
	var last uint64
	_ = b.read(ctx, &last, 0, deliver)
}

// read delivers the stream's messages after *last until ctx ends or, when upTo > 0, up to
// stream sequence upTo.
func (b *natsBroker) read(ctx context.Context, last *uint64, upTo uint64, deliver func(delivery)) error {
	var nc *natsgo.Conn
	defer func() {
		if nc != nil {
			nc.Close()
		}
	}()
	for ctx.Err() == nil {
		if upTo > 0 && *last >= upTo {
			return nil
		}
		var js jetstream.JetStream
		if nc == nil {
			var err error
			if nc, js, err = b.connect(); err != nil {
				nc = nil
				_ = relay.Sleep(ctx, 200*time.Millisecond)
				continue
			}
		} else {
			js, _ = jetstream.New(nc)
		}
		cfg := jetstream.OrderedConsumerConfig{}
		if *last > 0 {
			cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
			cfg.OptStartSeq = *last + 1
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cons, err := js.OrderedConsumer(cctx, natsStream, cfg)
		cancel()
		if err != nil {
			_ = relay.Sleep(ctx, 200*time.Millisecond)
			continue
		}
		it, err := cons.Messages()
		if err != nil {
			_ = relay.Sleep(ctx, 200*time.Millisecond)
			continue
		}
		for {
			m, err := it.Next(jetstream.NextContext(ctx))
			if err != nil {
				break
			}
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			*last = md.Sequence.Stream
			deliver(delivery{id: m.Headers().Get("ce-id"), payload: m.Data(), at: time.Now(), headers: m.Headers()})
			if upTo > 0 && *last >= upTo {
				break
			}
		}
		it.Stop()
	}
	return ctx.Err()
}

func (b *natsBroker) restart(ctx context.Context, down time.Duration) error {
	b.stop()
	_ = relay.Sleep(ctx, down)
	return b.start()
}

func (b *natsBroker) canRestart() bool { return true }
func (b *natsBroker) cut()             { b.px.Cut() }
func (b *natsBroker) restore()         { b.px.Restore() }

func (b *natsBroker) sweep(ctx context.Context, fn func(delivery)) error {
	nc, js, err := b.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	st, err := js.Stream(ctx, natsStream)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	if info.State.LastSeq == 0 {
		return nil
	}
	var last uint64
	return b.read(ctx, &last, info.State.LastSeq, fn)
}

func (b *natsBroker) close() {
	if b.px != nil {
		b.px.Close()
	}
	b.stop()
}

func (b *natsBroker) seesHeaders() bool { return true }

func (b *natsBroker) notes() []string {
	return []string{"NATS: an in-process JetStream server (file store); broker-restart = Shutdown and start again on the same port and store directory; the relays reach it through a fault proxy (broker-cut)."}
}

// natsInboxDurable is the consumers' durable consumer: one for all processes, beside the
// raw consumer's ordered consumers.
const natsInboxDurable = "chaos-inbox"

// natsInboxAckWait is the consumers' AckWait: with MaxAckPending 1, a message held by a
// killed process blocks the durable until it is redelivered, AckWait later.
const natsInboxAckWait = 2 * time.Second

func (b *natsBroker) inboxSetup(context.Context, int) (func(int) map[string]string, error) {
	return func(int) map[string]string {
		return map[string]string{
			"url": "nats://" + b.px.Addr(), "stream": natsStream, "subject_prefix": natsPrefix,
			"durable": natsInboxDurable, "ack_wait": natsInboxAckWait.String(), "max_ack_pending": "1",
		}
	}, nil
}

func (b *natsBroker) inboxProcesses(n int) int { return n }

func (b *natsBroker) inboxNotes(n int) []string {
	return []string{fmt.Sprintf("consumers (NATS): %d natsinbox processes on one durable pull consumer %s (a second consumer of the stream, beside the raw consumer's ordered ones), through the broker's fault proxy, AckWait %s, MaxAckPending 1: JetStream has one unacknowledged message at a time for all the processes together, in stream order, so each key's order holds across processes, kills and redeliveries, at the cost of one message in flight (a killed process's message waits AckWait).", n, natsInboxDurable, natsInboxAckWait)}
}
