package sink

import (
	"net/url"
	"testing"

	"github.com/outboxgo/outbox"
)

// TestPercentEncode: the HTTP and NATS bindings' percent-encoding (3.1.3.2), their own
// example among the cases; a decoder percent-decoding once gets the value back.
func TestPercentEncode(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"":                           "",
		"order-42":                   "order-42",
		"com.example.order.created":  "com.example.order.created",
		"2025-03-14T15:09:26.5358Z":  "2025-03-14T15:09:26.5358Z",
		"a b":                        "a%20b",
		`say "hi"`:                   "say%20%22hi%22",
		"100%":                       "100%25",
		"Euro € 😀":                   "Euro%20%E2%82%AC%20%F0%9F%98%80", // the binding's example
		"tab\there":                  "tab%09here",
		"/mycontext/subcontext?x=1&": "/mycontext/subcontext?x=1&",
	}
	for in, want := range tests {
		got := PercentEncode(in)
		if got != want {
			t.Errorf("PercentEncode(%q) = %q, want %q", in, got, want)
		}
		if dec, err := url.PathUnescape(got); err != nil || dec != in {
			t.Errorf("PathUnescape(%q) = %q, %v; want %q", got, dec, err, in)
		}
	}
}

// TestCheckHeaders: the sinks' check refuses what Enqueue refuses, permanently, naming the
// header, and costs nothing for a valid set.
func TestCheckHeaders(t *testing.T) {
	for _, h := range []map[string]string{
		{"Nats-Rollup": "sub"}, {"CE-ID": "x"}, {"cloudEvents:type": "x"}, {"ce_source": "x"},
		{"Host": "evil.example"}, {"webhook-id": "x"}, {"BCC": "q"}, {"bad name": "x"},
		{"x": "a\nb"}, {"content-type": "a/b", "Content-Type": "c/d"},
		{"outboxseq": "1"}, {"OUTBOXSEQ": "1"}, {"ce_outboxseq": "1"}, {"cloudEvents:outboxseq": "1"},
	} {
		err := CheckHeaders(&outbox.Record{Message: outbox.Message{Headers: h}})
		if !IsPermanent(err) {
			t.Errorf("CheckHeaders(%q) = %v, want a permanent error", h, err)
		}
	}
	ok := &outbox.Record{Message: outbox.Message{Headers: map[string]string{
		"content-type": "application/json", "traceparent": "00-1", "X-Note": "50% \u20ac"}}}
	if err := CheckHeaders(ok); err != nil {
		t.Errorf("CheckHeaders(valid) = %v", err)
	}
	if err := CheckHeaders(&outbox.Record{}); err != nil {
		t.Errorf("CheckHeaders(no headers) = %v", err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = CheckHeaders(ok) }); n != 0 {
		t.Errorf("CheckHeaders of a valid set allocates %.0f times, want 0", n)
	}
}

// TestAttributesSeq: the position travels as the outboxseq extension, the decimal Seq, and
// is absent when Seq is not positive.
func TestAttributesSeq(t *testing.T) {
	t.Parallel()
	seqOf := func(r *outbox.Record) (string, bool) {
		for _, a := range Attributes(r, "src") {
			if a.Name == SeqAttribute {
				return a.Value, true
			}
		}
		return "", false
	}
	for _, c := range []struct {
		seq  int64
		want string
		ok   bool
	}{{1, "1", true}, {42, "42", true}, {9007199254740993, "9007199254740993", true}, {0, "", false}, {-5, "", false}} {
		r := &outbox.Record{Message: outbox.Message{ID: outbox.NewID(), Topic: "t"}, Seq: c.seq}
		if got, ok := seqOf(r); got != c.want || ok != c.ok {
			t.Errorf("Seq %d: outboxseq %q (present %v), want %q (present %v)", c.seq, got, ok, c.want, c.ok)
		}
	}
}
