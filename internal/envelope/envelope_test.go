package envelope

import (
	"strings"
	"testing"
)

func TestReserved(t *testing.T) {
	t.Parallel()
	reserved := map[string]Class{
		"ce-id": CloudEvents, "CE-ID": CloudEvents, "Ce-Source": CloudEvents, "ce_id": CloudEvents,
		"CE_TYPE": CloudEvents, "cloudEvents:id": CloudEvents, "CLOUDEVENTS_SUBJECT": CloudEvents,
		"ce-": CloudEvents, "id": CloudEvents, "Time": CloudEvents, "DATACONTENTTYPE": CloudEvents,
		"outboxseq": CloudEvents, "OutboxSeq": CloudEvents, "ce-outboxseq": CloudEvents, "ce_outboxseq": CloudEvents,
		"cloudEvents:outboxseq": CloudEvents,
		"Nats-Msg-Id":           JetStream, "nats-rollup": JetStream, "NATS-TTL": JetStream,
		"Nats-Expected-Last-Subject-Sequence": JetStream,
		"CC":                                  RabbitMQ, "bcc": RabbitMQ, "X-Death": RabbitMQ, "x-first-death-queue": RabbitMQ,
		"Host": HTTP, "content-length": HTTP, "Transfer-Encoding": HTTP, "CONNECTION": HTTP,
		"TE": HTTP, "Upgrade": HTTP, "Proxy-Authorization": HTTP,
		"webhook-id": Webhooks, "Webhook-Signature": Webhooks,
	}
	for name, want := range reserved {
		if class, what, ok := Reserved(name); !ok || class != want || what == "" {
			t.Errorf("Reserved(%q) = %q, %q, %v; want class %q", name, class, what, ok, want)
		}
	}
	for _, name := range []string{
		"content-type", "Content-Type", "traceparent", "X-Request-Id", "identity", "sources", "cee",
		"ce", "nats", "natsy", "ccc", "hostname", "x-deathly", "webhook", "cloudevents", "x-tenant",
		"outbox", "outboxseqs", "seq",
		strings.Repeat("a", MaxNameLen+1),
	} {
		if class, _, ok := Reserved(name); ok {
			t.Errorf("Reserved(%q) = %q, want not reserved", name, class)
		}
	}
}

func TestCheck(t *testing.T) {
	bad := []map[string]string{
		{"": "v"},
		{"a b": "v"},
		{"a:b": "v"},
		{strings.Repeat("a", MaxNameLen+1): "v"},
		{"Nats-Rollup": "sub"},
		{"x": "a\r\nNats-Rollup: sub"},
		{"x": "a\x00"},
		{"x": "\xff"},
		{"content-type": "a/b", "Content-Type": "c/d"},
		{"content-type": "application/cloudevents+json; charset=utf-8"},
		{"Content-Type": "Application/CloudEvents-Batch+json"},
		{"CONTENT-TYPE": " application/cloudevents"},
	}
	// Many headers, two of which differ only in case: the map path.
	many := map[string]string{"X-Dup": "1", "x-dup": "2"}
	for i := range 20 {
		many[strings.Repeat("h", i+1)] = "v"
	}
	bad = append(bad, many)
	for _, h := range bad {
		if name, reason := Check(h); reason == "" {
			t.Errorf("Check(%q) accepted", h)
		} else if _, ok := h[name]; !ok {
			t.Errorf("Check(%q) named %q, not one of its headers", h, name)
		}
	}
	if name, reason := Check(map[string]string{"note": "application/cloudevents+json"}); reason != "" {
		t.Errorf("Check refused %q, not a content type: %s", name, reason)
	}
	good := map[string]string{"content-type": "application/json", "traceparent": "00-1", "X-Note": "100% \"echt\" \u20ac\t"}
	if name, reason := Check(good); reason != "" {
		t.Errorf("Check(%q) refused %q: %s", good, name, reason)
	}
	if n := testing.AllocsPerRun(100, func() { Check(good) }); n != 0 {
		t.Errorf("Check of a valid set allocates %.0f times, want 0", n)
	}
}
