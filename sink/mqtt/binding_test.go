package mqtt_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/cloudevents/sdk-go/v2/binding"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	"github.com/eclipse/paho.golang/paho"

	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/sinktest"
)

// The CloudEvents Go SDK's MQTT binding module (protocol/mqtt_paho) cannot be had from the
// module proxy, so publishMessage is a small binding.Message over a paho.Publish following
// the MQTT binding (3.1, MQTT 5 binary mode): every user property is an attribute named as
// the property, datacontenttype is the Content Type property. The SDK's binding and event
// packages do the rest (attribute lookup, extension name rules, time parsing).
type publishMessage struct{ p *paho.Publish }

var unprefixed = spec.WithPrefix("")

func (m publishMessage) version() spec.Version {
	if m.p.Properties == nil {
		return nil
	}
	for _, up := range m.p.Properties.User {
		if up.Key == "specversion" {
			return unprefixed.Version(up.Value)
		}
	}
	return nil
}

func (m publishMessage) ReadEncoding() binding.Encoding {
	if m.version() != nil {
		return binding.EncodingBinary
	}
	return binding.EncodingUnknown
}

func (m publishMessage) ReadStructured(context.Context, binding.StructuredWriter) error {
	return binding.ErrNotStructured
}

func (m publishMessage) ReadBinary(ctx context.Context, w binding.BinaryWriter) error {
	v := m.version()
	if v == nil {
		return binding.ErrNotBinary
	}
	if ct := m.p.Properties.ContentType; ct != "" {
		if err := w.SetAttribute(v.AttributeFromKind(spec.DataContentType), ct); err != nil {
			return err
		}
	}
	for _, up := range m.p.Properties.User {
		var err error
		if attr := v.Attribute(up.Key); attr != nil {
			err = w.SetAttribute(attr, up.Value)
		} else {
			err = w.SetExtension(up.Key, up.Value)
		}
		if err != nil {
			return fmt.Errorf("user property %q: %w", up.Key, err)
		}
	}
	if len(m.p.Payload) > 0 {
		return w.SetData(bytes.NewReader(m.p.Payload))
	}
	return nil
}

func (m publishMessage) Finish(error) error { return nil }

// GetAttribute and GetExtension make publishMessage a binding.MessageMetadataReader.
func (m publishMessage) GetAttribute(k spec.Kind) (spec.Attribute, any) {
	v := m.version()
	if v == nil {
		return nil, nil
	}
	attr := v.AttributeFromKind(k)
	if attr == nil {
		return nil, nil
	}
	if k == spec.DataContentType {
		if ct := m.p.Properties.ContentType; ct != "" {
			return attr, ct
		}
		return attr, nil
	}
	if val := m.GetExtension(attr.Name()); val != nil {
		return attr, val
	}
	return attr, nil
}

func (m publishMessage) GetExtension(name string) any {
	if m.p.Properties == nil {
		return nil
	}
	for _, up := range m.p.Properties.User {
		if up.Key == name {
			return up.Value
		}
	}
	return nil
}

// decode reads a PUBLISH as a CloudEvent with the adapter above; the extensions but
// outboxseq are the user's headers (under the MQTT binding they are attributes).
func decode(p *paho.Publish, prefix, sep string) (sinktest.Received, error) {
	topic := strings.TrimPrefix(p.Topic, prefix)
	if sep != "." {
		topic = strings.ReplaceAll(topic, sep, ".")
	}
	msg := publishMessage{p}
	if msg.ReadEncoding() != binding.EncodingBinary {
		return sinktest.Received{}, fmt.Errorf("PUBLISH on %s is not a binary-mode CloudEvent: %+v", p.Topic, p.Properties)
	}
	ev, err := binding.ToEvent(context.Background(), msg)
	if err != nil {
		return sinktest.Received{}, fmt.Errorf("CloudEvents MQTT binding cannot read the PUBLISH on %s: %w", p.Topic, err)
	}
	m, err := sinktest.FromEvent(topic, ev)
	if err != nil {
		return m, err
	}
	for name, v := range ev.Extensions() {
		if name != sink.SeqAttribute { // the position, in m.OutboxSeq
			m.Headers[name] = fmt.Sprint(v)
		}
	}
	return m, nil
}
