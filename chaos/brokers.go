package chaos

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/relay"
)

// broker is the sink side of a run: a broker the run owns (or a private corner of a shared
// one), the relays' settings for it, a consumer, and its faults.
type broker interface {
	// relayEnv is the relays' sink configuration (OUTBOX_SINK_*).
	relayEnv() []string
	// consume hands every delivered message to deliver, in delivery order, until ctx ends.
	consume(ctx context.Context, deliver func(delivery))
	// restart stops the broker, keeps it down for down, and starts it again with its data.
	// errNoRestart when the broker is not the run's to restart (canRestart is false).
	restart(ctx context.Context, down time.Duration) error
	canRestart() bool
	// cut severs the relays' connections to the broker and refuses new ones until restore.
	cut()
	restore()
	// sweep reads everything the broker stores, from the start, to tell messages the
	// consumer missed from lost ones. errNoSweep when the broker cannot (a queue).
	sweep(ctx context.Context, fn func(delivery)) error
	// close releases everything the broker holds.
	close()
	// notes are what the report should say about how faults map onto this broker.
	notes() []string
	// seesHeaders reports whether consume fills delivery.headers.
	seesHeaders() bool
}

var (
	errNoRestart = errors.New("this broker cannot be restarted by the checker")
	errNoSweep   = errors.New("this broker cannot be re-read")
)

// ---- NATS JetStream: an in-process server the run owns ----

const (
	natsStream  = "CHAOS"
	natsPrefix  = "chaos."
	kafkaPrefix = "chaos."
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

// ---- Kafka: an in-process kfake cluster the run owns ----

type kafkaBroker struct {
	dir   string
	ports []int
	cuts  *cutter

	mu sync.Mutex
	c  *kfake.Cluster
}

const (
	kafkaTopic      = kafkaPrefix + outboxTopic
	kafkaPartitions = 12
)

func startKafka(dir string) (*kafkaBroker, error) {
	b := &kafkaBroker{dir: dir, cuts: newCutter()}
	if err := b.start(); err != nil {
		return nil, err
	}
	for _, a := range b.c.ListenAddrs() {
		_, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		b.ports = append(b.ports, p)
	}
	if err := b.c.CreateTopic(kafkaTopic, kafkaPartitions, nil); err != nil {
		b.close()
		return nil, fmt.Errorf("creating topic %s: %w", kafkaTopic, err)
	}
	return b, nil
}

func (b *kafkaBroker) start() error {
	opts := []kfake.Opt{kfake.NumBrokers(3), kfake.DataDir(b.dir), kfake.SyncWrites(), kfake.ListenFn(b.cuts.listen)}
	if len(b.ports) > 0 {
		opts = append(opts, kfake.Ports(b.ports...))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("starting kfake: %w", err)
	}
	b.mu.Lock()
	b.c = c
	b.mu.Unlock()
	return nil
}

func (b *kafkaBroker) stop() {
	b.mu.Lock()
	c := b.c
	b.c = nil
	b.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

func (b *kafkaBroker) addrs() []string {
	var out []string
	for _, p := range b.ports {
		out = append(out, net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	}
	return out
}

func (b *kafkaBroker) relayEnv() []string {
	brokers := ""
	for i, a := range b.addrs() {
		if i > 0 {
			brokers += ","
		}
		brokers += a
	}
	return []string{
		"OUTBOX_SINK_TYPE=kafka",
		"OUTBOX_SINK_KAFKA_BROKERS=" + brokers,
		"OUTBOX_SINK_KAFKA_TOPIC_PREFIX=" + kafkaPrefix,
		"OUTBOX_SINK_KAFKA_PRODUCE_TIMEOUT=5s",
	}
}

func (b *kafkaBroker) client(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(b.addrs()...),
		kgo.ConsumeTopics(kafkaTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
	}, opts...)...)
}

func (b *kafkaBroker) consume(ctx context.Context, deliver func(delivery)) {
	cl, err := b.client()
	if err != nil {
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) { deliver(kafkaDelivery(r, now)) })
	}
}

func kafkaDelivery(r *kgo.Record, at time.Time) delivery {
	d := delivery{payload: r.Value, at: at, headers: make(map[string][]string, len(r.Headers))}
	for _, h := range r.Headers {
		if h.Key == "ce_id" {
			d.id = string(h.Value)
		}
		d.headers[h.Key] = append(d.headers[h.Key], string(h.Value))
	}
	return d
}

func (b *kafkaBroker) restart(ctx context.Context, down time.Duration) error {
	b.stop()
	_ = relay.Sleep(ctx, down)
	return b.start()
}

func (b *kafkaBroker) canRestart() bool { return true }
func (b *kafkaBroker) cut()             { b.cuts.Cut() }
func (b *kafkaBroker) restore()         { b.cuts.Restore() }

// sweep reads every partition from the start up to its end offset at the time of the call.
func (b *kafkaBroker) sweep(ctx context.Context, fn func(delivery)) error {
	cl, err := b.client()
	if err != nil {
		return err
	}
	defer cl.Close()
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = kafkaTopic
	for p := range int32(kafkaPartitions) {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = p
		rp.Timestamp = -1 // the end
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("listing offsets: %w", err)
	}
	ends := map[int32]int64{}
	var want int64
	for _, p := range resp.Topics[0].Partitions {
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
			return fmt.Errorf("listing offsets of partition %d: %w", p.Partition, err)
		}
		ends[p.Partition] = p.Offset
		want += p.Offset
	}
	var got int64
	for got < want {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %d of %d records: %w", got, want, err)
		}
		now := time.Now()
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[r.Partition] {
				got++
				fn(kafkaDelivery(r, now))
			}
		})
	}
	return nil
}

func (b *kafkaBroker) close() { b.stop() }

func (b *kafkaBroker) seesHeaders() bool { return true }

func (b *kafkaBroker) notes() []string {
	return []string{"Kafka: an in-process kfake cluster of 3 brokers (data dir, fsync per batch), topic chaos.events with 12 partitions; broker-restart = Close and NewCluster on the same ports and data dir; broker-cut closes every connection at the brokers' listeners (consumer's included) and refuses new ones, since Kafka clients dial the addresses the metadata advertises and would bypass a proxy."}
}

// ---- RabbitMQ: a private exchange and queue on the shared server ----

type amqpBroker struct {
	url      string
	px       *faultproxy.Proxy
	exchange string
	queue    string
}

func startAMQP(rawURL, name string) (*amqpBroker, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parsing the RabbitMQ URL: %w", err)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "5672")
	}
	b := &amqpBroker{url: rawURL, exchange: name, queue: name}
	conn, err := amqp091.Dial(rawURL)
	if err != nil {
		return nil, fmt.Errorf("connecting to RabbitMQ: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := ch.ExchangeDeclare(b.exchange, "topic", false, false, false, false, nil); err != nil {
		return nil, fmt.Errorf("declaring exchange: %w", err)
	}
	if _, err := ch.QueueDeclare(b.queue, false, false, false, false, nil); err != nil {
		b.close()
		return nil, fmt.Errorf("declaring queue: %w", err)
	}
	if err := ch.QueueBind(b.queue, "#", b.exchange, false, nil); err != nil {
		b.close()
		return nil, fmt.Errorf("binding queue: %w", err)
	}
	if b.px, err = startProxy(host); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

func (b *amqpBroker) relayEnv() []string {
	u, _ := url.Parse(b.url)
	u.Host = b.px.Addr()
	return []string{
		"OUTBOX_SINK_TYPE=amqp",
		"OUTBOX_SINK_AMQP_URL=" + u.String(),
		"OUTBOX_SINK_AMQP_EXCHANGE=" + b.exchange,
		"OUTBOX_SINK_AMQP_PUBLISH_TIMEOUT=5s",
		"OUTBOX_SINK_AMQP_RECONNECT_WAIT=100ms",
	}
}

// consume reads the queue (auto-ack) on a connection of its own, reconnecting if it drops.
func (b *amqpBroker) consume(ctx context.Context, deliver func(delivery)) {
	for ctx.Err() == nil {
		b.consumeOnce(ctx, deliver)
		_ = relay.Sleep(ctx, 200*time.Millisecond)
	}
}

func (b *amqpBroker) consumeOnce(ctx context.Context, deliver func(delivery)) {
	conn, err := amqp091.Dial(b.url)
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	ds, err := ch.ConsumeWithContext(ctx, b.queue, "", true, false, false, false, nil)
	if err != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case d, ok := <-ds:
			if !ok {
				return
			}
			id, _ := d.Headers["cloudEvents:id"].(string)
			if id == "" {
				id = d.MessageId
			}
			deliver(delivery{id: id, payload: d.Body, at: time.Now()})
		}
	}
}

func (b *amqpBroker) restart(context.Context, time.Duration) error { return errNoRestart }
func (b *amqpBroker) canRestart() bool                             { return false }
func (b *amqpBroker) cut()                                         { b.px.Cut() }
func (b *amqpBroker) restore()                                     { b.px.Restore() }

func (b *amqpBroker) sweep(context.Context, func(delivery)) error { return errNoSweep }

func (b *amqpBroker) close() {
	if b.px != nil {
		b.px.Close()
	}
	conn, err := amqp091.Dial(b.url)
	if err != nil {
		return
	}
	defer conn.Close()
	if ch, err := conn.Channel(); err == nil {
		_, _ = ch.QueueDelete(b.queue, false, false, false)
		_ = ch.ExchangeDelete(b.exchange, false, false)
	}
}

func (b *amqpBroker) seesHeaders() bool { return false }

func (b *amqpBroker) notes() []string {
	return []string{"RabbitMQ: the shared server, which other tests use, is never restarted: no broker-restart; broker-cut (every relay connection cut at a fault proxy, new ones refused for the outage) stands in for it. The consumer reads a private queue bound to a private topic exchange."}
}
