package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	cekafka "github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	kafkasink "github.com/outboxgo/outbox/sink/kafka"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// newCluster starts an in-process fake Kafka cluster of three brokers for the test.
func newCluster(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(3)}, opts...)...)
	if err != nil {
		t.Fatalf("starting kfake cluster: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

var topicSeq atomic.Int64

// uniqueName returns a topic name (or prefix) no other test uses.
func uniqueName(base string) string {
	return fmt.Sprintf("outbox-test-%s-%d-%d", base, time.Now().UnixNano()%1e6, topicSeq.Add(1))
}

// createTopic creates a topic on c. opts are extra client options (SASL, TLS).
func createTopic(t testing.TB, c *kfake.Cluster, name string, partitions int32, configs map[string]string, opts ...kgo.Opt) {
	t.Helper()
	cl := adminClient(t, c, opts...)
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic = name
	rt.NumPartitions = partitions
	rt.ReplicationFactor = 3
	for k, v := range configs {
		rc := kmsg.NewCreateTopicsRequestTopicConfig()
		rc.Name = k
		rc.Value = kmsg.StringPtr(v)
		rt.Configs = append(rt.Configs, rc)
	}
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("creating topic %s: %v", name, err)
	}
	if err := kerr.ErrorForCode(resp.Topics[0].ErrorCode); err != nil {
		t.Fatalf("creating topic %s: %v", name, err)
	}
}

func adminClient(t testing.TB, c *kfake.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// newSink creates a sink with a test logger, closed when the test ends.
func newSink(t testing.TB, cfg kafkasink.Config) *kafkasink.Sink {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = logtest.NewLevel(t, slog.LevelInfo)
	}
	s, err := kafkasink.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func publish(t testing.TB, s *kafkasink.Sink, recs ...*outbox.Record) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := s.Publish(ctx, recs)
	if len(res) != len(recs) {
		t.Fatalf("Publish returned %d results for %d messages", len(res), len(recs))
	}
	return res
}

func requireOK(t testing.TB, res []error) {
	t.Helper()
	for i, err := range res {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

// receiver reads Kafka topics from the start and decodes the CloudEvents Kafka binding.
// It reads every partition in offset order, so messages of one key arrive in the order
// they were stored.
type receiver struct {
	cl      *kgo.Client
	outbox  map[string]string // Kafka topic → outbox topic
	buf     []*kgo.Record
	lastErr error
}

var _ sinktest.Receiver = (*receiver)(nil)

// newReceiver consumes the Kafka topics prefix+topic for each outbox topic.
func newReceiver(t testing.TB, c *kfake.Cluster, prefix string, topics []string, opts ...kgo.Opt) *receiver {
	t.Helper()
	r := &receiver{outbox: map[string]string{}}
	var kt []string
	for _, topic := range topics {
		r.outbox[prefix+topic] = topic
		kt = append(kt, prefix+topic)
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.ConsumeTopics(kt...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100 * time.Millisecond),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	r.cl = cl
	return r
}

func (r *receiver) next(ctx context.Context) (*kgo.Record, error) {
	for len(r.buf) == 0 {
		fs := r.cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			if r.lastErr != nil {
				return nil, fmt.Errorf("%w (last fetch error: %v)", err, r.lastErr)
			}
			return nil, err
		}
		fs.EachError(func(topic string, p int32, err error) {
			r.lastErr = fmt.Errorf("%s[%d]: %w", topic, p, err)
		})
		fs.EachRecord(func(rec *kgo.Record) { r.buf = append(r.buf, rec) })
	}
	rec := r.buf[0]
	r.buf = r.buf[1:]
	return rec, nil
}

func (r *receiver) Receive(ctx context.Context) (sinktest.Received, error) {
	rec, err := r.next(ctx)
	if err != nil {
		return sinktest.Received{}, err
	}
	return decode(rec, r.outbox[rec.Topic])
}

// decode reads a record with the CloudEvents Go SDK's Kafka binding (protocol/kafka_sarama,
// fed a sarama.ConsumerMessage built from the franz-go record), not with the sink's code.
// Every header but the ce_ ones and content-type is the user's.
func decode(rec *kgo.Record, topic string) (sinktest.Received, error) {
	cm := &sarama.ConsumerMessage{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset, Key: rec.Key, Value: rec.Value}
	for _, h := range rec.Headers {
		cm.Headers = append(cm.Headers, &sarama.RecordHeader{Key: []byte(h.Key), Value: h.Value})
	}
	msg := cekafka.NewMessageFromConsumerMessage(cm)
	if msg.ReadEncoding() != binding.EncodingBinary {
		return sinktest.Received{}, fmt.Errorf("record on %s is not a binary-mode CloudEvent: headers %v", rec.Topic, rec.Headers)
	}
	ev, err := binding.ToEvent(context.Background(), msg)
	if err != nil {
		return sinktest.Received{}, fmt.Errorf("CloudEvents Kafka binding cannot read the record on %s: %w", rec.Topic, err)
	}
	m, err := sinktest.FromEvent(topic, ev)
	if err != nil {
		return m, err
	}
	for _, h := range rec.Headers {
		if !strings.HasPrefix(h.Key, "ce_") && !strings.EqualFold(h.Key, "content-type") {
			m.Headers[h.Key] = string(h.Value)
		}
	}
	return m, nil
}

// readAll reads every record of topic (all partitions) up to the high watermarks at the
// time of the call.
func readAll(t testing.TB, c *kfake.Cluster, topic string, opts ...kgo.Opt) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl := adminClient(t, c, opts...)
	defer cl.Close()
	// The end offsets tell when to stop.
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	mreq := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	mreq.Topics = append(mreq.Topics, mt)
	mresp, err := mreq.RequestWith(ctx, cl)
	if err != nil || len(mresp.Topics) != 1 {
		t.Fatalf("metadata for %s: %v", topic, err)
	}
	for _, p := range mresp.Topics[0].Partitions {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = p.Partition
		rp.Timestamp = -1 // latest
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("list offsets of %s: %v", topic, err)
	}
	ends := map[int32]int64{}
	want := int64(0)
	for _, p := range resp.Topics[0].Partitions {
		if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
			t.Fatalf("list offsets of %s[%d]: %v", topic, p.Partition, err)
		}
		ends[p.Partition] = p.Offset
		want += p.Offset
	}
	consumer := adminClient(t, c, append([]kgo.Opt{
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(100 * time.Millisecond),
	}, opts...)...)
	defer consumer.Close()
	var out []*kgo.Record
	for int64(len(out)) < want {
		fs := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %d of %d records of %s: %v", len(out), want, topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[r.Partition] {
				out = append(out, r)
			}
		})
	}
	return out
}

func header(r *kgo.Record, name string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == name {
			return string(h.Value), true
		}
	}
	return "", false
}
