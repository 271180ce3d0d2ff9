package chaos

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/outboxgo/outbox/relay"
)

// ---- Kafka: an in-process kfake cluster the run owns ----

type kafkaBroker struct {
	dir   string
	ports []int
	cuts  *cutter

	mu sync.Mutex
	c  *kfake.Cluster
}

const (
	kafkaPrefix     = "chaos."
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
	opts := []kfake.Opt{kfake.NumBrokers(3), kfake.DataDir(b.dir), kfake.SyncWrites(), kfake.ListenFn(b.cuts.listen),
		kfake.GroupMinSessionTimeout(time.Second)} // the consumers' session timeout is kafkaInboxSession
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

// kafkaInboxGroup is the consumers' consumer group, beside the raw consumer's group-less
// client.
const kafkaInboxGroup = "chaos-inbox"

func (b *kafkaBroker) inboxSetup(context.Context, int) (func(int) map[string]string, error) {
	return func(int) map[string]string {
		return map[string]string{
			"brokers": strings.Join(b.addrs(), ","), "group": kafkaInboxGroup,
			"topic_prefix": kafkaPrefix, "topic": outboxTopic,
		}
	}, nil
}

func (b *kafkaBroker) inboxProcesses(n int) int { return n }

func (b *kafkaBroker) inboxNotes(n int) []string {
	return []string{fmt.Sprintf("consumers (Kafka): %d kafkainbox processes in one consumer group %s on the %d-partition topic the sink keys by message key, session timeout %s: a partition has one owner at a time, starting where the last one committed, so each key's order holds across processes, kills and rebalances; broker-cut and broker-restart hit the consumers too (the brokers' listeners).", n, kafkaInboxGroup, kafkaPartitions, kafkaInboxSession)}
}

// kafkaInboxSession is the consumers' group session timeout: a killed process's partitions
// move after it.
const kafkaInboxSession = 3 * time.Second
