package kafkainbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/inboxtest"
	"github.com/outboxgo/outbox/inbox/kafkainbox"
)

var batches = []int{1, 8}

func TestRoundTrip(t *testing.T) {
	for _, batch := range batches {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			c := newCluster(t)
			topic := uniqueName("rt")
			createTopic(t, c, "prod."+topic, 3)
			inboxtest.RoundTrip(t, inboxtest.RoundTripHarness{
				Sink: newSinkPrefix(t, c, "svc-rt", "prod."), Topic: topic, Source: "svc-rt",
				Run: func(ctx context.Context, in *inbox.Inbox, h inbox.Handler) error {
					cons, err := kafkainbox.New(kafkainbox.Config{Inbox: in, Brokers: c.ListenAddrs(), Group: uniqueName("g"),
						Topics: []string{topic}, TopicPrefix: "prod.", Batch: batch, ClientOptions: fastGroup})
					if err != nil {
						return err
					}
					return cons.Run(ctx, h)
				},
			})
		})
	}
}

// TestDuplicatesAfterLostCommit: the broker loses the offset commits, so a restarted
// consumer reads everything again; every record still has one effect.
func TestDuplicatesAfterLostCommit(t *testing.T) {
	c := newCluster(t)
	topic := uniqueName("dup")
	createTopic(t, c, topic, 2)
	e := newEnv(t, inbox.Config{})
	s := newSink(t, c, "svc")
	var recs []*outbox.Record
	for i := range 20 {
		recs = append(recs, record(topic, fmt.Sprint("k", i%4), fmt.Sprint(i)))
	}
	publish(t, s, recs...)

	var refused atomic.Int64
	c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		refused.Add(1)
		r := req.(*kmsg.OffsetCommitRequest)
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, p := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = p.Partition, kerr.OffsetMetadataTooLarge.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	group := uniqueName("g")
	cfg := kafkainbox.Config{Inbox: e.in, Brokers: c.ListenAddrs(), Group: group, Topics: []string{topic}}
	var calls atomic.Int64
	h := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		calls.Add(1)
		return e.insert(ctx, tx, m)
	}
	r := start(t, cfg, h)
	e.waitEffects(len(recs), 30*time.Second)
	r.stop(t)
	if refused.Load() == 0 {
		t.Fatal("no offset commit was attempted")
	}
	if off := committed(t, c, group, topic, 0); off > 0 {
		t.Fatalf("offset %d committed although the broker refused commits", off)
	}
	c.DropControl()

	// Everything is delivered again: duplicates, then a new record.
	r = start(t, cfg, h)
	last := record(topic, "k0", "last")
	publish(t, s, last)
	got := e.waitEffects(len(recs)+1, 30*time.Second)
	r.stop(t)
	checkOnce(t, got, append(recs, last))
	if n := calls.Load(); n != int64(len(recs)+1) {
		t.Errorf("handler called %d times, want %d", n, len(recs)+1)
	}
}

// TestPoison: a record whose handler always fails is delivered MaxAttempts times, then
// dead-lettered with the error and committed past; the partition's later records flow.
func TestPoison(t *testing.T) {
	for _, batch := range batches {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			c := newCluster(t)
			topic := uniqueName("poison")
			createTopic(t, c, topic, 1)
			e := newEnv(t, inbox.Config{MaxAttempts: 3, Backoff: func(int) time.Duration { return 20 * time.Millisecond }})
			s := newSink(t, c, "svc")
			poison := record(topic, "k", "poison")
			after := []*outbox.Record{record(topic, "k", "a1"), record(topic, "other", "a2")}
			publish(t, s, append([]*outbox.Record{poison}, after...)...)
			var tries atomic.Int64
			h := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
				if m.ID == poison.ID.String() {
					tries.Add(1)
					return errors.New("poisoned payload")
				}
				return e.insert(ctx, tx, m)
			}
			group := uniqueName("g")
			r := start(t, kafkainbox.Config{Inbox: e.in, Brokers: c.ListenAddrs(), Group: group, Topics: []string{topic}, Batch: batch}, h)
			got := e.waitEffects(len(after), 30*time.Second)
			checkOnce(t, got, after)
			deadline := time.Now().Add(10 * time.Second)
			for committed(t, c, group, topic, 0) != 3 {
				if time.Now().After(deadline) {
					t.Fatalf("committed offset %d, want 3 (past the poison)", committed(t, c, group, topic, 0))
				}
				time.Sleep(20 * time.Millisecond)
			}
			r.stop(t)
			// In batch mode the first delivery, when it came with others, also ran in the
			// batch's transaction, rolled back when it failed; retries go alone.
			if n, most := tries.Load(), int64(3+min(batch-1, 1)); n < 3 || n > most {
				t.Errorf("poison handled %d times, want 3 (MaxAttempts) to %d", n, most)
			}
			dead, err := e.in.DeadLetters(context.Background(), 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(dead) != 1 || dead[0].Message.ID != poison.ID.String() || dead[0].Error != "poisoned payload" || dead[0].Attempts != 3 {
				t.Fatalf("dead letters = %+v, want the poison with its error after 3 attempts", dead)
			}
		})
	}
}

// TestOrderWithRetry: key k's first record fails twice; k's records are applied in order
// after it, and key j, on another partition, is not held back.
func TestOrderWithRetry(t *testing.T) {
	for _, batch := range batches {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			c := newCluster(t)
			topic := uniqueName("order")
			createTopic(t, c, topic, 2)
			k, j := keysOnDifferentPartitions(topic, 2)
			e := newEnv(t, inbox.Config{Backoff: func(int) time.Duration { return 300 * time.Millisecond }})
			s := newSink(t, c, "svc")
			m1, m2, m3 := record(topic, k, "m1"), record(topic, k, "m2"), record(topic, k, "m3")
			j1, j2 := record(topic, j, "j1"), record(topic, j, "j2")
			var fails atomic.Int64
			h := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
				if m.ID == m1.ID.String() && fails.Add(1) <= 2 {
					return errors.New("not yet")
				}
				return e.insert(ctx, tx, m)
			}
			r := start(t, kafkainbox.Config{Inbox: e.in, Brokers: c.ListenAddrs(), Group: uniqueName("g"), Topics: []string{topic}, Batch: batch}, h)
			publish(t, s, m1, j1, m2, j2, m3)
			got := e.waitEffects(5, 30*time.Second)
			r.stop(t)
			checkOnce(t, got, []*outbox.Record{m1, j1, m2, j2, m3})
			// j's records went through while m1 waited for its retries.
			if got[0].key != j || got[1].key != j {
				t.Errorf("effects %v: key %q's records should come first, while %q's first record is retried", got, j, k)
			}
			if n := fails.Load(); n != 3 {
				t.Errorf("m1 handled %d times, want 3", n)
			}
		})
	}
}

// keysOnDifferentPartitions returns two keys the sink's (franz-go's default) partitioner
// puts on different partitions of topic.
func keysOnDifferentPartitions(topic string, n int) (string, string) {
	p := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	first := p.Partition(&kgo.Record{Key: []byte("key-a")}, n)
	for i := range 100 {
		k := fmt.Sprint("key-", i)
		if p.Partition(&kgo.Record{Key: []byte(k)}, n) != first {
			return "key-a", k
		}
	}
	panic("no two keys on different partitions")
}

// TestRedeliveredAfterCrash: the consumer dies while the handler runs (before any commit):
// the next owner's delivery is Redelivered, so the attempt is counted, and after
// MaxAttempts such crashes the record is dead-lettered without the handler.
func TestRedeliveredAfterCrash(t *testing.T) {
	c := newCluster(t)
	topic := uniqueName("crash")
	createTopic(t, c, topic, 1)
	e := newEnv(t, inbox.Config{MaxAttempts: 2})
	s := newSink(t, c, "svc")
	crash := record(topic, "k", "crash")
	publish(t, s, crash)
	group := uniqueName("g")
	cfg := kafkainbox.Config{Inbox: e.in, Brokers: c.ListenAddrs(), Group: group, Topics: []string{topic}}
	for run := range 2 {
		in := make(chan struct{})
		h := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
			close(in)
			<-ctx.Done() // the process dies here
			return ctx.Err()
		}
		r := start(t, cfg, h)
		select {
		case <-in:
		case <-time.After(30 * time.Second):
			t.Fatalf("run %d: handler not called", run)
		}
		r.stop(t)
	}
	called := make(chan struct{}, 1)
	h := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		called <- struct{}{}
		return e.insert(ctx, tx, m)
	}
	r := start(t, cfg, h)
	defer r.stop(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		dead, err := e.in.DeadLetters(context.Background(), 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) == 1 {
			if dead[0].Message.ID != crash.ID.String() || dead[0].Attempts != 2 {
				t.Fatalf("dead letter %+v, want the crashing record after 2 attempts", dead[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the crashing record was not dead-lettered: its deliveries were not counted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for committed(t, c, group, topic, 0) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the dead-lettered record was not committed past")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case <-called:
		t.Fatal("the handler ran a third time")
	default:
	}
}

// TestRebalance: two members share a group; one leaves and joins again mid-stream. Every
// record is applied exactly once, in order per key.
func TestRebalance(t *testing.T) {
	for _, batch := range batches {
		t.Run(fmt.Sprint("batch", batch), func(t *testing.T) {
			c := newCluster(t)
			topic := uniqueName("rebalance")
			createTopic(t, c, topic, 4)
			e := newEnv(t, inbox.Config{})
			s := newSink(t, c, "svc")
			// A key handled by two goroutines at once means two members owned its
			// partition at once.
			var mu sync.Mutex
			inflight := map[string]int{}
			overlaps := 0
			h := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
				mu.Lock()
				inflight[m.Key]++
				if inflight[m.Key] > 1 {
					overlaps++
				}
				mu.Unlock()
				defer func() {
					mu.Lock()
					inflight[m.Key]--
					mu.Unlock()
				}()
				time.Sleep(time.Millisecond) // slow enough for rebalances to land mid-stream
				return e.insert(ctx, tx, m)
			}
			cfg := kafkainbox.Config{Inbox: e.in, Brokers: c.ListenAddrs(), Group: uniqueName("g"), Topics: []string{topic}, Batch: batch}
			a := start(t, cfg, h)
			b := start(t, cfg, h)
			var recs []*outbox.Record
			const n = 600
			for i := range n {
				recs = append(recs, record(topic, fmt.Sprint("k", i%16), fmt.Sprint(i)))
			}
			publish(t, s, recs[:n/3]...)
			e.waitEffects(n/6, 30*time.Second)
			b.stop(t) // leaves: its partitions go to a
			publish(t, s, recs[n/3:2*n/3]...)
			e.waitEffects(n/2, 30*time.Second)
			b = start(t, cfg, h) // joins again
			publish(t, s, recs[2*n/3:]...)
			got := e.waitEffects(n, 60*time.Second)
			a.stop(t)
			b.stop(t)
			checkOnce(t, got, recs)
			mu.Lock()
			defer mu.Unlock()
			if overlaps > 0 {
				t.Errorf("%d times a key was handled by two members at once", overlaps)
			}
		})
	}
}

// TestConnectionCut: every broker connection is severed mid-stream; the consumer resumes,
// nothing is lost and nothing applied twice.
func TestConnectionCut(t *testing.T) {
	cut := newCutter()
	c := newCluster(t, kfake.ListenFn(cut.listen))
	topic := uniqueName("cut")
	createTopic(t, c, topic, 2)
	e := newEnv(t, inbox.Config{})
	s := newSink(t, c, "svc")
	var recs []*outbox.Record
	for i := range 300 {
		recs = append(recs, record(topic, fmt.Sprint("k", i%8), fmt.Sprint(i)))
	}
	h := func(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
		time.Sleep(time.Millisecond)
		return e.insert(ctx, tx, m)
	}
	r := start(t, kafkainbox.Config{Inbox: e.in, Brokers: c.ListenAddrs(), Group: uniqueName("g"), Topics: []string{topic}, Batch: 4}, h)
	publish(t, s, recs[:150]...)
	applied := len(e.waitEffects(30, 30*time.Second))
	for range 3 {
		deadline := time.Now().Add(30 * time.Second)
		for cut.cut() == 0 { // the client reconnected
			if time.Now().After(deadline) {
				t.Fatal("the consumer did not reconnect")
			}
			time.Sleep(10 * time.Millisecond)
		}
		applied = len(e.waitEffects(min(applied+20, 150), 30*time.Second))
	}
	publish(t, s, recs[150:]...)
	got := e.waitEffects(len(recs), 60*time.Second)
	r.stop(t)
	checkOnce(t, got, recs)
}

// TestReject: a record that is not a CloudEvent goes to the dead letters under its
// Kafka coordinates, and the records after it flow.
func TestReject(t *testing.T) {
	c := newCluster(t)
	topic := uniqueName("reject")
	createTopic(t, c, topic, 1)
	e := newEnv(t, inbox.Config{})
	cl := adminClient(t, c)
	ctx := context.Background()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("not an event")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	good := record(topic, "k", "good")
	publish(t, newSink(t, c, "svc"), good)
	r := start(t, kafkainbox.Config{Inbox: e.in, Brokers: c.ListenAddrs(), Group: uniqueName("g"), Topics: []string{topic}}, e.insert)
	got := e.waitEffects(1, 30*time.Second)
	r.stop(t)
	checkOnce(t, got, []*outbox.Record{good})
	dead, err := e.in.DeadLetters(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := "kafka:" + topic + ":0:0"
	if len(dead) != 1 || dead[0].Message.ID != want || !strings.Contains(dead[0].Error, "no id attribute") ||
		string(dead[0].Message.Payload) != "not an event" {
		t.Fatalf("dead letters = %+v, want %s with its payload and reason", dead, want)
	}
}

func TestConfigValidate(t *testing.T) {
	in := newEnv(t, inbox.Config{}).in
	ok := kafkainbox.Config{Inbox: in, Brokers: []string{"127.0.0.1:9092"}, Group: "g", Topics: []string{"t"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for field, mod := range map[string]func(*kafkainbox.Config){
		"inbox":            func(c *kafkainbox.Config) { c.Inbox = nil },
		"brokers":          func(c *kafkainbox.Config) { c.Brokers = nil },
		"group":            func(c *kafkainbox.Config) { c.Group = "" },
		"topics":           func(c *kafkainbox.Config) { c.Topics = []string{"bad topic"} },
		"topic_map":        func(c *kafkainbox.Config) { c.TopicMap = map[string]string{"": "x"} },
		"batch":            func(c *kafkainbox.Config) { c.Batch = -1 },
		"error_delay":      func(c *kafkainbox.Config) { c.ErrorDelay = -1 },
		"max_queued":       func(c *kafkainbox.Config) { c.MaxQueued = -1 },
		"redrive_interval": func(c *kafkainbox.Config) { c.RedriveInterval = -1 },
	} {
		cfg := ok
		mod(&cfg)
		err := cfg.Validate()
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field != field {
			t.Errorf("%s: Validate = %v, want a ConfigError naming %s", field, err, field)
		}
		if _, err := kafkainbox.New(cfg); !errors.As(err, &ce) {
			t.Errorf("%s: New = %v, want the ConfigError", field, err)
		}
	}
}
