package nats_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	cenats "github.com/cloudevents/sdk-go/protocol/nats_jetstream/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/natstest"
	"github.com/outboxgo/outbox/sink"
	natssink "github.com/outboxgo/outbox/sink/nats"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// sdkReceiver reads a stream with an ordered consumer and decodes every message with the
// CloudEvents Go SDK's NATS JetStream binding (protocol/nats_jetstream), not with the sink's
// code, then percent-decodes the attributes as NATS binding 3.1.3.2 says (the SDK skips
// that step). Headers other than ce- ones go to Headers.
type sdkReceiver struct {
	it     jetstream.MessagesContext
	prefix string
}

func newSDKReceiver(t *testing.T, nc *natsgo.Conn, stream, prefix string) *sdkReceiver {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(it.Stop)
	return &sdkReceiver{it: it, prefix: prefix}
}

func (r *sdkReceiver) Receive(ctx context.Context) (sinktest.Received, error) {
	m, err := r.it.Next(jetstream.NextContext(ctx))
	if err != nil {
		return sinktest.Received{}, err
	}
	msg := &natsgo.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
	if cenats.NewMessage(msg).ReadEncoding() != binding.EncodingBinary {
		return sinktest.Received{}, fmt.Errorf("message on %s is not a binary-mode CloudEvent: headers %v", m.Subject(), m.Headers())
	}
	ev, err := binding.ToEvent(ctx, cenats.NewMessage(msg))
	if err != nil {
		return sinktest.Received{}, fmt.Errorf("CloudEvents NATS binding cannot read the message on %s: %w", m.Subject(), err)
	}
	rec, err := sinktest.FromEvent(strings.TrimPrefix(m.Subject(), r.prefix), ev)
	if err != nil {
		return rec, err
	}
	if err := rec.DecodePercent(); err != nil {
		return sinktest.Received{}, err
	}
	for name, vs := range m.Headers() {
		if !strings.HasPrefix(strings.ToLower(name), "ce-") && len(vs) > 0 {
			rec.Headers[name] = vs[0]
		}
	}
	return rec, nil
}

// TestRollupHeaderRefused: a row header Nats-Rollup: sub on a stream that allows rollups
// used to erase the subject's earlier messages while the sink reported it delivered. The
// sink refuses it permanently, and the stream keeps every earlier message.
func TestRollupHeaderRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *jetstream.StreamConfig) { c.AllowRollup = true })
	var recs []*outbox.Record
	for i := range 3 {
		recs = append(recs, sinktest.NewRecord("orders", "k", fmt.Appendf(nil, `{"n":%d}`, i)))
	}
	for _, name := range []string{"Nats-Rollup", "nats-rollup", "NATS-ROLLUP"} {
		r := sinktest.NewRecord("orders", "k", []byte(`{"rollup":true}`))
		r.Headers = map[string]string{name: "sub"}
		recs = append(recs, r)
	}
	res := publish(t, b.sink, recs...)
	for i, err := range res {
		if i < 3 && err != nil {
			t.Errorf("message %d: %v", i, err)
		}
		if i >= 3 && !sink.IsPermanent(err) {
			t.Errorf("message %d with %v: got %v, want a permanent error", i, recs[i].Headers, err)
		}
	}
	if n := b.streamMsgs(t); n != 3 {
		t.Errorf("stream holds %d messages, want the 3 published before the rollup", n)
	}
}

// newBindingHarness is the conformance harness decoding through the SDK.
func newBindingHarness(t *testing.T) (*natsgo.Conn, *natssink.Sink, *sdkReceiver) {
	t.Helper()
	nc := natstest.Connect(t)
	stream, prefix := natstest.Stream(t, nc)
	s := newSink(t, natssink.Config{URL: natstest.URL(), SubjectPrefix: prefix, Source: "sinktest"})
	return nc, s, newSDKReceiver(t, nc, stream, prefix)
}
