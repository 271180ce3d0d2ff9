package kafka

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
)

func TestCheckTopic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		topic string
		ok    bool
	}{
		{"orders", true},
		{"orders.created", true},
		{"orders_created-v1.2", true},
		{"ORDERS", true},
		{"...a", true},
		{strings.Repeat("a", maxTopicLen), true},
		{strings.Repeat("a", maxTopicLen+1), false},
		{"", false},
		{".", false},
		{"..", false},
		{"orders created", false},
		{"orders/created", false},
		{"orders:created", false},
		{"orders*", false},
		{"commande-café", false},
		{"orders\n", false},
		{"orders\x00", false},
	}
	for _, tc := range tests {
		if reason := checkTopic(tc.topic); (reason == "") != tc.ok {
			t.Errorf("checkTopic(%q) = %q, want ok=%v", tc.topic, reason, tc.ok)
		}
	}
}

var legalTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// FuzzCheckTopic: checkTopic accepts exactly the names Kafka accepts.
func FuzzCheckTopic(f *testing.F) {
	for _, s := range []string{"orders", ".", "..", "a b", "a/b", strings.Repeat("x", 250), "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		want := legalTopic.MatchString(name) && name != "." && name != ".."
		if got := checkTopic(name) == ""; got != want {
			t.Errorf("checkTopic(%q) accepts=%v, want %v", name, got, want)
		}
	})
}

func TestTopicCache(t *testing.T) {
	t.Parallel()
	c := topicCache{prefix: "app.", exact: map[string]string{"audit": "audit-log"}}
	for i := 0; i < 2; i++ { // second round from the cache
		if got, err := c.get("orders"); got != "app.orders" || err != nil {
			t.Errorf("get(orders) = %q, %v", got, err)
		}
		if got, err := c.get("audit"); got != "audit-log" || err != nil {
			t.Errorf("get(audit) = %q, %v; want the exact mapping without prefix", got, err)
		}
		if _, err := c.get("bad topic"); !sink.IsPermanent(err) || !strings.Contains(err.Error(), `"bad topic"`) {
			t.Errorf("get(bad topic) error %v, want a permanent error naming the topic", err)
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err       error
		permanent bool
		rejected  bool // batchRejectedError: isolated by Publish
		suspect   bool
		says      string
	}{
		{kerr.MessageTooLarge, false, true, false, "rejected the record batch"},
		{fmt.Errorf("%w (uncompressed_bytes=9)", kerr.MessageTooLarge), false, true, false, ""},
		{kerr.RecordListTooLarge, false, true, false, ""},
		{kerr.InvalidRecord, false, true, false, ""},
		{kerr.InvalidTopicException, true, false, false, "topic name"},
		{kerr.TopicAuthorizationFailed, false, false, false, "not authorized"},
		{kerr.UnknownTopicOrPartition, false, false, false, "does not exist"},
		{kerr.UnknownTopicID, false, false, false, "does not exist"},
		{fmt.Errorf("%w, last err: %w", kgo.ErrRecordTimeout, kerr.UnknownTopicOrPartition), false, false, false, "does not exist"},
		{kgo.ErrRecordTimeout, false, false, false, "produce timeout"},
		{kgo.ErrRecordRetries, false, false, false, ""},
		{kgo.ErrClientClosed, false, false, false, ""},
		{kgo.ErrMaxBuffered, false, false, false, ""},
		{kerr.NotLeaderForPartition, false, false, false, ""},
		{kerr.RequestTimedOut, false, false, false, ""},
		{kerr.NotEnoughReplicas, false, false, false, ""},
		{kerr.NotEnoughReplicasAfterAppend, false, false, false, ""},
		{kerr.CorruptMessage, false, false, false, ""},
		{kerr.ClusterAuthorizationFailed, false, false, true, ""},
		{kerr.UnsupportedCompressionType, false, false, true, ""},
		{kerr.PolicyViolation, false, false, true, ""},
		{context.Canceled, false, false, false, ""},
		{context.DeadlineExceeded, false, false, false, ""},
		{io.EOF, false, false, false, ""},
		{errors.New("dial tcp: connection refused"), false, false, false, ""},
	}
	for _, tc := range tests {
		got, suspect := classify(tc.err, "orders")
		_, rejected := errors.AsType[*batchRejectedError](got)
		if sink.IsPermanent(got) != tc.permanent || rejected != tc.rejected || suspect != tc.suspect || !errors.Is(got, tc.err) {
			t.Errorf("classify(%v) = %v (permanent %v, rejected %v, suspect %v), want permanent %v, rejected %v, suspect %v, wrapping the cause",
				tc.err, got, sink.IsPermanent(got), rejected, suspect, tc.permanent, tc.rejected, tc.suspect)
		}
		if !strings.Contains(got.Error(), `"orders"`) || !strings.Contains(got.Error(), tc.says) {
			t.Errorf("classify(%v) = %q, want it to name the topic and say %q", tc.err, got, tc.says)
		}
	}
}

// TestSinkWide holds every produce failure to its class as Publish reports it (classify,
// then markUnavailable): the sink's as a whole (Unavailable) or the message's.
func TestSinkWide(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err         error
		unavailable bool
	}{
		{kerr.MessageTooLarge, false},
		{kerr.RecordListTooLarge, false},
		{kerr.InvalidRecord, false},
		{kerr.InvalidTopicException, false}, // permanent
		{kerr.UnsupportedCompressionType, false},
		{kerr.PolicyViolation, false},
		{kerr.TopicAuthorizationFailed, true},
		{kerr.ClusterAuthorizationFailed, true},
		{kerr.SaslAuthenticationFailed, true},
		{kerr.UnsupportedSaslMechanism, true},
		{kerr.UnknownTopicOrPartition, true},
		{kerr.UnknownTopicID, true},
		{kerr.NotLeaderForPartition, true},
		{kerr.RequestTimedOut, true},
		{kerr.NotEnoughReplicas, true},
		{kerr.BrokerNotAvailable, true},
		{kgo.ErrRecordTimeout, true},
		{fmt.Errorf("%w, last err: %w", kgo.ErrRecordTimeout, kerr.UnknownTopicOrPartition), true},
		{kgo.ErrClientClosed, true},
		{kgo.ErrMaxBuffered, true},
		{context.Canceled, true},
		{context.DeadlineExceeded, true},
		{io.EOF, true},
		{errors.New("dial tcp: connection refused"), true},
	}
	for _, tc := range tests {
		got, _ := classify(tc.err, "orders")
		res := []error{got}
		markUnavailable(res)
		if sink.IsUnavailable(res[0]) != tc.unavailable || !errors.Is(res[0], tc.err) {
			t.Errorf("classify(%v) = %v, unavailable %v, want %v", tc.err, res[0], sink.IsUnavailable(res[0]), tc.unavailable)
		}
	}
	// A batch rejection that could not be isolated in time stays the message's.
	rej, _ := classify(kerr.MessageTooLarge, "orders")
	res := []error{fmt.Errorf("%w (not retried alone: %w)", rej, context.DeadlineExceeded)}
	markUnavailable(res)
	if sink.IsUnavailable(res[0]) {
		t.Errorf("%v: Unavailable, want it counted", res[0])
	}
}

func TestAppendUUID(t *testing.T) {
	t.Parallel()
	for i := 0; i < 100; i++ {
		id := outbox.NewID()
		if got := string(appendUUID(nil, id)); got != id.String() {
			t.Fatalf("appendUUID = %s, want %s", got, id)
		}
	}
}

func TestVarintLen(t *testing.T) {
	t.Parallel()
	buf := make([]byte, binary.MaxVarintLen64)
	for _, n := range []int{-1, 0, 1, 63, 64, 65, 127, 128, 8191, 8192, 1 << 20, 1<<30 - 1, 1 << 30} {
		if got, want := varintLen(n), binary.PutVarint(buf, int64(n)); got != want {
			t.Errorf("varintLen(%d) = %d, want %d", n, got, want)
		}
	}
}

// TestMaxMessageBytesBoundary: the sink's size check agrees with franz-go's. A message
// whose batch is exactly max_message_bytes is delivered; one byte more fails permanently
// before it is handed to the client.
func TestMaxMessageBytesBoundary(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const topic, limit = "boundary", 4096
	admin, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 1, 1
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := req.RequestWith(ctx, admin); err != nil {
		t.Fatal(err)
	}

	s, err := New(ctx, Config{Brokers: c.ListenAddrs(), MaxMessageBytes: limit, Compression: "none",
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, key := range []string{"", "k", strings.Repeat("k", 200)} {
		rec := &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: topic, Key: key,
			Headers: map[string]string{"content-type": "text/plain", "x-a": "b"}}, CreatedAt: time.Now()}
		// Grow the payload until the batch is exactly at the limit.
		found := false
		for n := 0; n < limit && !found; n++ {
			rec.Payload = make([]byte, n)
			recs := s.records([]*outbox.Record{rec}, &call{res: make([]error, 1), settled: make([]bool, 1), left: 1, done: make(chan struct{})})
			found = batchSize(&recs[0]) == limit
		}
		if !found {
			t.Fatalf("key %q: no payload size makes a batch of exactly %d bytes", key, limit)
		}
		if res := s.Publish(ctx, []*outbox.Record{rec}); res[0] != nil {
			t.Errorf("key %q: message of exactly max_message_bytes: %v", key, res[0])
		}
		rec.Payload = append(rec.Payload, 'x')
		res := s.Publish(ctx, []*outbox.Record{rec})
		if !sink.IsPermanent(res[0]) || !strings.Contains(res[0].Error(), "max_message_bytes") {
			t.Errorf("key %q: one byte over: %v, want the sink's permanent size error", key, res[0])
		}
	}
}
