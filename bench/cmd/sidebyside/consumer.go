package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// collector records, for each message seq of a workload, when a JetStream consumer first
// received it, and counts duplicates, unknown messages and per-key order violations.
type collector struct {
	epoch time.Time      // receive times are nanoseconds since epoch (monotonic)
	recv  []atomic.Int64 // 0 = not received
	keys  int            // per-key order check over seq%keys; 0 disables it

	seen, distinct, dups, unknown atomic.Int64
	orderViolations               atomic.Int64
	lastByKey                     []int // consumer goroutine only
}

func newCollector(epoch time.Time, n, keys int) *collector {
	c := &collector{epoch: epoch, recv: make([]atomic.Int64, n), keys: keys}
	if keys > 0 {
		c.lastByKey = make([]int, keys)
		for i := range c.lastByKey {
			c.lastByKey[i] = -1
		}
	}
	return c
}

func (c *collector) now() int64 { return int64(time.Since(c.epoch)) }

func (c *collector) record(data []byte, at int64) {
	c.seen.Add(1)
	seq, ok := parseSeq(data)
	if !ok || seq < 0 || seq >= len(c.recv) {
		c.unknown.Add(1)
		return
	}
	if !c.recv[seq].CompareAndSwap(0, at) {
		c.dups.Add(1)
		return
	}
	c.distinct.Add(1)
	if c.keys > 0 {
		k := seq % c.keys
		if seq < c.lastByKey[k] {
			c.orderViolations.Add(1)
		}
		c.lastByKey[k] = max(c.lastByKey[k], seq)
	}
}

// parseSeq reads N from a payload starting with {"seq":N.
func parseSeq(b []byte) (int, bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"seq":`))
	if !ok {
		return 0, false
	}
	end := bytes.IndexAny(rest, ",}")
	if end < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(rest[:end]))
	return n, err == nil
}

// consume starts an ordered consumer of subject in stream, from the stream's start, feeding c.
// stop ends it.
func consume(ctx context.Context, js jetstream.JetStream, stream, subject string, c *collector) (stop func(), err error) {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, fmt.Errorf("creating consumer on %s: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1000))
	if err != nil {
		return nil, fmt.Errorf("consuming %s: %w", stream, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := it.Next()
			if err != nil {
				return // stopped
			}
			c.record(m.Data(), c.now())
		}
	}()
	return func() { it.Stop(); <-done }, nil
}

// wait waits until counter reaches n or the timeout passes.
func wait(ctx context.Context, counter *atomic.Int64, n int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for counter.Load() < n {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}
