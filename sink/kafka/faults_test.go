package kafka_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/logtest"
	"github.com/outboxgo/outbox/sink"
	kafkasink "github.com/outboxgo/outbox/sink/kafka"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// keyedBatch makes n messages over keys keys, each key's messages in order.
func keyedBatch(topic, prefix string, keys, n int) []*outbox.Record {
	recs := make([]*outbox.Record, n)
	for i := range recs {
		recs[i] = sinktest.NewRecord(topic, fmt.Sprintf("%s-%d", prefix, i%keys), fmt.Appendf(nil, `{"i":%d}`, i))
	}
	return recs
}

// checkLog verifies what the topic holds against the acknowledged messages: each is there,
// each key's messages are in publish order, and no copy of an earlier message follows a
// later one of its key. It returns how many duplicate copies the log holds.
func checkLog(t *testing.T, log []*kgo.Record, acked []*outbox.Record) int {
	t.Helper()
	type pos struct{ first, last int }
	at := map[string]*pos{}
	for i, r := range log {
		id, _ := header(r, "ce_id")
		if p := at[id]; p != nil {
			p.last = i
		} else {
			at[id] = &pos{i, i}
		}
	}
	dups := len(log) - len(at)
	last := map[string]*pos{}
	for _, m := range acked {
		p := at[m.ID.String()]
		if p == nil {
			t.Errorf("acknowledged message %s (key %s, seq %d) is not in the topic", m.ID, m.Key, m.Seq)
			continue
		}
		if prev := last[m.Key]; prev != nil {
			if prev.first > p.first {
				t.Errorf("key %s: message seq %d stored before an earlier one", m.Key, m.Seq)
			}
			if prev.last > p.first {
				t.Errorf("key %s: a copy of an earlier message follows message seq %d", m.Key, m.Seq)
			}
		}
		last[m.Key] = p
	}
	return dups
}

// TestRetriableBrokerErrors: retriable produce errors are retried inside the client, the
// idempotent producer dedupes what the broker had stored already (REQUEST_TIMED_OUT and
// NOT_ENOUGH_REPLICAS_AFTER_APPEND are answered after the append), and nothing is lost,
// duplicated or reordered.
func TestRetriableBrokerErrors(t *testing.T) {
	t.Parallel()
	for _, code := range []*kerr.Error{
		kerr.NotLeaderForPartition,
		kerr.LeaderNotAvailable,
		kerr.NotEnoughReplicas,
		kerr.RequestTimedOut,
		kerr.NotEnoughReplicasAfterAppend,
		kerr.NetworkException,
		kerr.KafkaStorageError,
	} {
		t.Run(code.Message, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t)
			topic := uniqueName("retriable")
			createTopic(t, c, topic, 3, nil)
			s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs()})
			requireOK(t, publish(t, s, keyedBatch(topic, "warm", 5, 10)...)) // producer id, metadata
			h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: code, Count: 5})
			var acked []*outbox.Record
			for round := 0; round < 5; round++ {
				recs := keyedBatch(topic, "k", 20, 200)
				requireOK(t, publish(t, s, recs...))
				acked = append(acked, recs...)
			}
			if hits := h.Hits(); hits == 0 {
				t.Fatal("the fault was never hit")
			}
			log := readAll(t, c, topic)
			if dups := checkLog(t, log, acked); dups != 0 {
				t.Errorf("the topic holds %d duplicates; the idempotent producer should have deduped them", dups)
			}
		})
	}
}

// cutter wraps kfake's listeners so that a test can sever every connection from the
// broker side, the way a broker crash or a network cut looks to the client: requests
// in flight may or may not have been stored, and their responses are lost.
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

// cut closes every open connection; it returns how many.
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

// relay is a stand-in for the relay: each Publish carries at most one message per key, a
// key's next message goes out only once the previous one was acknowledged, and failed
// messages are published again.
type relay struct {
	t       *testing.T
	s       *kafkasink.Sink
	queues  map[string][]*outbox.Record // per key, unacknowledged, in order
	keys    []string
	acked   []*outbox.Record
	failed  int
	timeout time.Duration
}

func newRelay(t *testing.T, s *kafkasink.Sink, timeout time.Duration) *relay {
	return &relay{t: t, s: s, queues: map[string][]*outbox.Record{}, timeout: timeout}
}

func (r *relay) enqueue(recs ...*outbox.Record) {
	for _, m := range recs {
		if _, ok := r.queues[m.Key]; !ok {
			r.keys = append(r.keys, m.Key)
		}
		r.queues[m.Key] = append(r.queues[m.Key], m)
	}
}

func (r *relay) pending() int {
	n := 0
	for _, q := range r.queues {
		n += len(q)
	}
	return n
}

// wave publishes the head of every key's queue once; it returns how many were acknowledged.
func (r *relay) wave() int {
	r.t.Helper()
	var batch []*outbox.Record
	for _, k := range r.keys {
		if q := r.queues[k]; len(q) > 0 {
			batch = append(batch, q[0])
		}
	}
	if len(batch) == 0 {
		return 0
	}
	start := time.Now()
	res := r.s.Publish(context.Background(), batch)
	if d := time.Since(start); d > r.timeout+time.Second {
		r.t.Errorf("Publish took %s with a produce timeout of %s", d, r.timeout)
	}
	ok := 0
	for i, err := range res {
		m := batch[i]
		switch {
		case err == nil:
			ok++
			r.acked = append(r.acked, m)
			r.queues[m.Key] = r.queues[m.Key][1:]
		case sink.IsPermanent(err):
			r.t.Fatalf("message seq %d: permanent error from a retriable fault: %v", m.Seq, err)
		default:
			r.failed++
		}
	}
	return ok
}

// TestChaos publishes many relay waves over many keys while the brokers answer with
// retriable errors, time out requests after storing them, and drop every connection now
// and then. Publish calls may fail (retryably); the test publishes failed messages again
// like the relay. In the end every acknowledged message is in the topic once per copy,
// per key in order, and no stale copy follows a newer message of its key.
func TestChaos(t *testing.T) {
	t.Parallel()
	cut := newCutter()
	c := newCluster(t, kfake.ListenFn(cut.listen))
	topic := uniqueName("chaos")
	createTopic(t, c, topic, 6, nil)
	const timeout = 2 * time.Second
	s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(), ProduceTimeout: timeout})

	codes := []*kerr.Error{kerr.NotLeaderForPartition, kerr.RequestTimedOut, kerr.NotEnoughReplicasAfterAppend, kerr.NotEnoughReplicas}
	var seed atomic.Uint64
	h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Count: -1, Err: kerr.NotLeaderForPartition,
		When: func(kmsg.Request) bool { return seed.Add(1)%20 == 0 }})
	defer h.Remove()
	var faults []*kfake.FaultHandle
	for i, code := range codes[1:] {
		faults = append(faults, c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Count: -1, Err: code,
			When: func(kmsg.Request) bool { return seed.Add(1)%uint64(23+6*i) == 0 }}))
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var cuts atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if rand.IntN(3) == 0 {
					cuts.Add(int64(cut.cut()))
				}
			}
		}
	}()

	start := time.Now()
	r := newRelay(t, s, timeout)
	const keys, rounds = 100, 25
	for round := 0; round < rounds; round++ {
		r.enqueue(keyedBatch(topic, fmt.Sprintf("r%d", round%7), keys, keys)...)
		r.wave()
	}
	close(stop)
	wg.Wait()
	h.Remove()
	for _, f := range faults {
		f.Remove()
	}
	deadline := time.Now().Add(60 * time.Second)
	for r.pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still failing 60s after the faults stopped", r.pending())
		}
		r.wave()
	}
	log := readAll(t, c, topic)
	dups := checkLog(t, log, r.acked)
	hits := h.Hits()
	for _, f := range faults {
		hits += f.Hits()
	}
	t.Logf("%d messages acknowledged in %s, %d failed attempts retried, %d connections cut, %d injected errors, %d duplicates in the topic",
		len(r.acked), time.Since(start), r.failed, cuts.Load(), hits, dups)
}

// TestOversizedInBatch: a message within the client's limit but larger than the topic's
// max.message.bytes makes the broker refuse the whole record batch. The sink retries the
// batch's messages alone: the large one fails permanently, the others are delivered, in
// order, and later batches go through (the producer recovered).
func TestOversizedInBatch(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	topic := uniqueName("oversized")
	createTopic(t, c, topic, 1, map[string]string{"max.message.bytes": "4096"})
	// Linger so that the messages share a record batch.
	s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(), Linger: 20 * time.Millisecond, Compression: "none"})
	recs := keyedBatch(topic, "k", 10, 30)
	big := sinktest.NewRecord(topic, "big", randomBytes(6000))
	batch := append(append(append([]*outbox.Record(nil), recs[:15]...), big), recs[15:]...)
	res := publish(t, s, batch...)
	var acked []*outbox.Record
	for i, err := range res {
		switch {
		case batch[i] == big:
			if !sink.IsPermanent(err) || !errors.Is(err, kerr.MessageTooLarge) {
				t.Errorf("oversized message: %v, want a permanent MESSAGE_TOO_LARGE", err)
			}
			t.Logf("oversized message: %v", err)
		case err != nil:
			t.Errorf("message %d: %v", i, err)
		default:
			acked = append(acked, batch[i])
		}
	}
	more := keyedBatch(topic, "k", 10, 30)
	requireOK(t, publish(t, s, more...))
	acked = append(acked, more...)
	checkLog(t, readAll(t, c, topic), acked)
}

// TestInvalidRecordInBatch: the broker refuses every record batch holding a poison record
// (INVALID_RECORD, as for a record without key on a compacted topic). Only the poison
// fails, permanently; the producer recovers from the failed batches.
func TestInvalidRecordInBatch(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	topic := uniqueName("invalid")
	createTopic(t, c, topic, 2, nil)
	poison := []byte("POISON-RECORD")
	h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Count: -1, Err: kerr.InvalidRecord,
		When: func(req kmsg.Request) bool {
			for _, rt := range req.(*kmsg.ProduceRequest).Topics {
				for _, rp := range rt.Partitions {
					if bytes.Contains(rp.Records, poison) {
						return true
					}
				}
			}
			return false
		}})
	defer h.Remove()
	s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(), Linger: 20 * time.Millisecond, Compression: "none"})
	var acked []*outbox.Record
	for round := 0; round < 3; round++ {
		recs := keyedBatch(topic, fmt.Sprintf("r%d", round), 20, 40)
		bad := sinktest.NewRecord(topic, "", poison)
		batch := append(append(append([]*outbox.Record(nil), recs[:20]...), bad), recs[20:]...)
		res := publish(t, s, batch...)
		for i, err := range res {
			switch {
			case batch[i] == bad:
				if !sink.IsPermanent(err) || !errors.Is(err, kerr.InvalidRecord) {
					t.Errorf("round %d: poison: %v, want a permanent INVALID_RECORD", round, err)
				}
			case err != nil:
				t.Errorf("round %d: message %d: %v", round, i, err)
			default:
				acked = append(acked, batch[i])
			}
		}
	}
	if h.Hits() == 0 {
		t.Fatal("the broker never refused a batch")
	}
	if dups := checkLog(t, readAll(t, c, topic), acked); dups != 0 {
		t.Errorf("%d duplicates", dups)
	}
}

// TestSequenceErrorsRecover: OUT_OF_ORDER_SEQUENCE_NUMBER and UNKNOWN_PRODUCER_ID make
// franz-go bump its producer epoch and reset the sequences; publishing goes on, nothing
// acknowledged is lost, order holds.
func TestSequenceErrorsRecover(t *testing.T) {
	t.Parallel()
	for _, code := range []*kerr.Error{kerr.OutOfOrderSequenceNumber, kerr.UnknownProducerID, kerr.InvalidProducerEpoch} {
		t.Run(code.Message, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t)
			topic := uniqueName("seq")
			createTopic(t, c, topic, 3, nil)
			const timeout = 3 * time.Second
			s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(), ProduceTimeout: timeout})
			r := newRelay(t, s, timeout)
			r.enqueue(keyedBatch(topic, "warm", 10, 10)...)
			for r.pending() > 0 {
				r.wave()
			}
			h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: code, Count: 2})
			for round := 0; round < 10; round++ {
				r.enqueue(keyedBatch(topic, "k", 50, 50)...)
				r.wave()
			}
			for deadline := time.Now().Add(30 * time.Second); r.pending() > 0; {
				if time.Now().After(deadline) {
					t.Fatalf("%d messages still failing", r.pending())
				}
				r.wave()
			}
			if h.Hits() == 0 {
				t.Fatal("the fault was never hit")
			}
			checkLog(t, readAll(t, c, topic), r.acked)
			t.Logf("%d failed attempts retried", r.failed)
		})
	}
}

// TestProducerIDFailureResets: a non-retriable error from InitProducerID stays with a
// franz-go client for good. The sink fails that Publish retryably, replaces the client,
// and the next Publish goes through.
func TestProducerIDFailureResets(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	topic := uniqueName("pid")
	createTopic(t, c, topic, 3, nil)
	h := c.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.InitProducerID}, Err: kerr.ClusterAuthorizationFailed, Count: 1})
	s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(), ProduceTimeout: 3 * time.Second})
	first := s.Client()
	recs := keyedBatch(topic, "k", 10, 50)
	for i, err := range publish(t, s, recs...) {
		if err == nil || sink.IsPermanent(err) {
			t.Fatalf("message %d: %v, want a retryable error", i, err)
		}
		if i == 0 {
			t.Logf("with the producer id failed: %v", err)
		}
	}
	if h.Hits() != 1 {
		t.Fatalf("InitProducerID fault hit %d times", h.Hits())
	}
	if s.Client() == first {
		t.Fatal("the client was not replaced")
	}
	requireOK(t, publish(t, s, recs...))
	checkLog(t, readAll(t, c, topic), recs)
}

// TestCancelInFlight: with the brokers not answering produce requests, a canceled Publish
// returns at once with the context's error, and one without deadline returns after the
// produce timeout; all results are Unavailable. Close does not hang either.
func TestCancelInFlight(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	topic := uniqueName("hang")
	createTopic(t, c, topic, 3, nil)
	const timeout = 700 * time.Millisecond
	s, err := kafkasink.New(context.Background(), kafkasink.Config{Brokers: c.ListenAddrs(), ProduceTimeout: timeout, Logger: logtest.NewLevel(t, slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	requireOK(t, publish(t, s, keyedBatch(topic, "warm", 5, 5)...))
	var hung atomic.Int64
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		hung.Add(1)
		return nil, nil, true // never answer
	})

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(150*time.Millisecond, cancel)
	start := time.Now()
	res := s.Publish(ctx, keyedBatch(topic, "k", 10, 100))
	if d := time.Since(start); d > 150*time.Millisecond+500*time.Millisecond {
		t.Errorf("canceled Publish returned after %s", d)
	}
	for i, err := range res {
		if !sink.IsUnavailable(err) || !errors.Is(err, context.Canceled) {
			t.Fatalf("message %d: %v, want an Unavailable error wrapping context.Canceled", i, err)
		}
	}

	// The canceled call's records leave the client's buffer, although their requests
	// are still unanswered: nothing piles up to be delivered after the outage.
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for deadline := time.Now().Add(5 * time.Second); s.Client().BufferedProduceRecords() > 0; <-poll.C {
		if time.Now().After(deadline) {
			t.Fatalf("%d records of the canceled Publish still buffered", s.Client().BufferedProduceRecords())
		}
	}

	start = time.Now()
	res = s.Publish(context.Background(), keyedBatch(topic, "k", 10, 100))
	d := time.Since(start)
	if d < timeout || d > timeout+time.Second {
		t.Errorf("Publish returned after %s, want about the produce timeout %s", d, timeout)
	}
	for i, err := range res {
		if !sink.IsUnavailable(err) {
			t.Fatalf("message %d: %v, want an Unavailable error", i, err)
		}
	}
	t.Logf("after the produce timeout: %v", res[0])
	if hung.Load() == 0 {
		t.Error("no produce request reached the brokers")
	}
	start = time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %s", d)
	}
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return ports
}

// TestOutage stops the whole cluster under a running sink, in the middle of a batch:
// while it is down every Publish fails retryably within the produce timeout, never with
// success; after the restart (same ports, state kept on disk) publishing resumes by
// itself, and every message ever acknowledged is in the topic, per key in order.
func TestOutage(t *testing.T) {
	t.Parallel()
	ports := freePorts(t, 3)
	dir := t.TempDir()
	start := func() *kfake.Cluster {
		t.Helper()
		c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.Ports(ports...), kfake.DataDir(dir), kfake.SyncWrites())
		if err != nil {
			t.Fatalf("starting kfake cluster: %v", err)
		}
		return c
	}
	c := start()
	topic := uniqueName("outage")
	createTopic(t, c, topic, 3, nil)

	const timeout = time.Second
	s := newSink(t, kafkasink.Config{Brokers: c.ListenAddrs(), ProduceTimeout: timeout})
	r := newRelay(t, s, timeout)
	r.enqueue(keyedBatch(topic, "before", 50, 50)...)
	if ok := r.wave(); ok != 50 {
		t.Fatalf("before the outage: %d of 50 acknowledged", ok)
	}

	// Stop the cluster while a large wave is in flight.
	r.enqueue(keyedBatch(topic, "during", 5000, 5000)...)
	stopped := make(chan struct{})
	time.AfterFunc(5*time.Millisecond, func() {
		c.Close()
		close(stopped)
	})
	inFlight := r.wave()
	<-stopped
	t.Logf("cluster stopped during a wave of 5000: %d acknowledged", inFlight)

	for i := 0; i < 5; i++ {
		r.enqueue(keyedBatch(topic, fmt.Sprintf("down%d", i), 20, 20)...)
		if ok := r.wave(); ok != 0 {
			t.Fatalf("outage wave %d: %d messages acknowledged by a stopped cluster", i, ok)
		}
	}
	t.Logf("%d messages waiting", r.pending())

	c = start()
	defer c.Close()
	deadline := time.Now().Add(60 * time.Second)
	for r.pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages still failing 60s after the restart", r.pending())
		}
		r.wave()
	}
	r.enqueue(keyedBatch(topic, "after", 50, 50)...)
	if ok := r.wave(); ok != 50 {
		t.Fatalf("after the restart: %d of 50 acknowledged", ok)
	}
	dups := checkLog(t, readAll(t, c, topic), r.acked)
	t.Logf("%d acknowledged, %d failed attempts, %d duplicates", len(r.acked), r.failed, dups)
}
