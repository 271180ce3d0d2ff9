package natstest

import (
	"context"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox/sink/sinktest"
)

// Receiver reads a stream from its first message with an ordered consumer and decodes each
// message from the CloudEvents NATS binding. Topics are subjects with prefix removed. The
// consumer stops when the test ends.
func Receiver(t testing.TB, nc *natsgo.Conn, stream, prefix string) sinktest.Receiver {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("natstest: creating consumer on %s: %v", stream, err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatalf("natstest: consuming %s: %v", stream, err)
	}
	t.Cleanup(it.Stop)
	return &receiver{it: it, prefix: prefix}
}

type receiver struct {
	it     jetstream.MessagesContext
	prefix string
}

func (r *receiver) Receive(ctx context.Context) (sinktest.Received, error) {
	m, err := r.it.Next(jetstream.NextContext(ctx))
	if err != nil {
		return sinktest.Received{}, err
	}
	return Decode(m.Subject(), m.Headers(), m.Data(), r.prefix), nil
}

// Decode maps a NATS message in CloudEvents binary mode to a sinktest.Received, decoding the
// percent-encoded ce- values. Headers other than the ce- ones, Nats-Msg-Id among them, go
// to Headers.
func Decode(subject string, h natsgo.Header, data []byte, prefix string) sinktest.Received {
	rec := sinktest.Received{
		Topic:   strings.TrimPrefix(subject, prefix),
		Headers: make(map[string]string, len(h)),
		Payload: data,
	}
	for name, vs := range h {
		if len(vs) == 0 {
			continue
		}
		v := vs[0]
		if strings.HasPrefix(name, "ce-") {
			// Attribute values are percent-encoded (NATS binding 3.1.3.2).
			if dec, err := sinktest.DecodePercent(v); err == nil {
				v = dec
			}
		}
		switch name {
		case "ce-id":
			rec.ID = v
		case "ce-source":
			rec.Source = v
		case "ce-specversion":
			rec.SpecVersion = v
		case "ce-type":
			rec.Type = v
		case "ce-subject":
			rec.Subject = v
		case "ce-time":
			rec.Time = v
		case "ce-datacontenttype":
			rec.DataContentType = v
		default:
			rec.Headers[name] = v
		}
	}
	return rec
}
