package inbox_test

import (
	"errors"
	"testing"
	"time"

	"github.com/outboxgo/outbox/inbox"
)

func TestEnvelopeMessage(t *testing.T) {
	attrs := func(edit func(map[string]string)) map[string]string {
		a := map[string]string{"id": "0193", "specversion": "1.0", "type": "order.created", "source": "shop",
			"subject": "acct-1", "time": "2026-12-07T01:02:03.123456789Z", "outboxseq": "42", "datacontenttype": "application/json"}
		if edit != nil {
			edit(a)
		}
		return a
	}
	m, err := inbox.Envelope{Topic: "orders", Attributes: attrs(nil), Headers: map[string]string{"Content-Type": "x", "trace": "t"}, Payload: []byte("{}")}.Message()
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 12, 7, 1, 2, 3, 123456789, time.UTC)
	if m.ID != "0193" || m.Topic != "orders" || m.Type != "order.created" || m.Source != "shop" || m.Key != "acct-1" ||
		!m.Time.Equal(want) || m.Position != 42 || string(m.Payload) != "{}" ||
		len(m.Headers) != 2 || m.Headers["content-type"] != "application/json" || m.Headers["trace"] != "t" {
		t.Fatalf("message = %+v", m)
	}
	if m, err := (inbox.Envelope{Attributes: attrs(func(a map[string]string) {
		delete(a, "subject")
		delete(a, "time")
		delete(a, "outboxseq")
		delete(a, "datacontenttype")
	})}).Message(); err != nil ||
		m.Key != "" || !m.Time.IsZero() || m.Position != 0 || m.Headers != nil {
		t.Fatalf("minimal = %+v, %v", m, err)
	}
	for name, edit := range map[string]func(map[string]string){
		"no id":        func(a map[string]string) { delete(a, "id") },
		"specversion":  func(a map[string]string) { a["specversion"] = "0.3" },
		"no type":      func(a map[string]string) { delete(a, "type") },
		"no source":    func(a map[string]string) { delete(a, "source") },
		"bad time":     func(a map[string]string) { a["time"] = "yesterday" },
		"bad seq":      func(a map[string]string) { a["outboxseq"] = "-1" },
		"seq not a no": func(a map[string]string) { a["outboxseq"] = "x" },
		"bad key":      func(a map[string]string) { a["subject"] = "\xff" },
	} {
		if _, err := (inbox.Envelope{Attributes: attrs(edit)}).Message(); !errors.Is(err, inbox.ErrInvalidMessage) {
			t.Errorf("%s: err = %v, want ErrInvalidMessage", name, err)
		}
	}
}
