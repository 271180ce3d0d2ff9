package sinktest_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// memBroker is a broker in memory that can be down; memSink publishes to it.
type memBroker struct {
	down   atomic.Bool
	mu     sync.Mutex
	stored []sinktest.Received
	notify chan struct{}
}

type memSink struct{ b *memBroker }

func (s memSink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	if s.b.down.Load() {
		return sink.FailAll(len(msgs), sink.Unavailable(errors.New("connection refused (test)")))
	}
	res := make([]error, len(msgs))
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	for i, m := range msgs {
		if err := ctx.Err(); err != nil {
			res[i] = err
			continue
		}
		s.b.stored = append(s.b.stored, sinktest.Received{Topic: m.Topic, ID: m.ID.String(), Subject: m.Key, Payload: m.Payload})
	}
	select {
	case s.b.notify <- struct{}{}:
	default:
	}
	return res
}

func (memSink) Close() error { return nil }

type memReceiver struct {
	b    *memBroker
	next int
}

func (r *memReceiver) Receive(ctx context.Context) (sinktest.Received, error) {
	for {
		r.b.mu.Lock()
		if r.next < len(r.b.stored) {
			m := r.b.stored[r.next]
			r.next++
			r.b.mu.Unlock()
			return m, nil
		}
		r.b.mu.Unlock()
		select {
		case <-r.b.notify:
		case <-ctx.Done():
			return sinktest.Received{}, ctx.Err()
		}
	}
}

// outage is an Outage of a new memBroker.
func outage() (sinktest.Outage, *memBroker) {
	b := &memBroker{notify: make(chan struct{}, 1)}
	return sinktest.Outage{Sink: memSink{b}, Timeout: time.Second,
		Cut: func() { b.down.Store(true) }, Restore: func() { b.down.Store(false) },
		Receiver: func() sinktest.Receiver { return &memReceiver{b: b} },
		Stored: func() int {
			b.mu.Lock()
			defer b.mu.Unlock()
			return len(b.stored)
		},
		Prompt: true}, b
}

// The outage cases pass for a sink that fails as they require while its broker is down.
func TestOutageCases(t *testing.T) {
	t.Parallel()
	o, _ := outage()
	o.During, o.CutAfter = 100, time.Nanosecond
	sinktest.Reconnect(t, o)
	o, _ = outage()
	o.DownFor = 300 * time.Millisecond
	sinktest.Reconnect(t, o)
	o, b := outage()
	b.down.Store(true)
	sinktest.StartWhileDown(t, o, sinktest.NewRecord("orders", "k", nil))
}
