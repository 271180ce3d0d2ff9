package relaytest

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/outboxgo/outbox"
)

// The order checks read payloads "key:n": the n-th message of key, n counting from 0. Messages
// and Payload write them.

// Payload is the payload of the n-th message of key: "key:n".
func Payload(key string, n int) []byte {
	return []byte(key + ":" + strconv.Itoa(n))
}

// ParsePayload splits a payload "key:n" (see Payload); ok is false for any other payload.
func ParsePayload(p []byte) (key string, n int, ok bool) {
	s := string(p)
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return s, -1, false
	}
	n, err := strconv.Atoi(s[i+1:])
	if err != nil || n < 0 {
		return s[:i], -1, false
	}
	return s[:i], n, true
}

// Messages builds keys×perKey messages on topic "test.orders" over the keys "k0", "k1"...,
// the payload of each "key:n" with n counting from from, interleaved across keys (n = from
// for every key, then from+1...), so that each key's messages are in its order.
func Messages(keys, from, perKey int) []outbox.Message {
	out := make([]outbox.Message, 0, keys*perKey)
	for n := from; n < from+perKey; n++ {
		for k := range keys {
			key := "k" + strconv.Itoa(k)
			out = append(out, outbox.Message{Topic: "test.orders", Key: key, Payload: Payload(key, n)})
		}
	}
	return out
}

// Order follows deliveries (of a sink, or as a consumer of the broker received them) and
// checks per-key order: the first delivery of each message must be the next of its key (n
// one more than the last first delivery's), so a lost message or one that overtook an
// earlier one of its key is caught where it happens; a message delivered again is a
// duplicate, counted and not checked (at-least-once delivery allows it). The zero value is
// ready to use.
type Order struct {
	next map[string]int  // the n the key's next first delivery must carry
	seen map[string]bool // message ids delivered
	dups int
}

// Add takes the next delivery: message id, with key, carrying payload. It returns an error
// when the payload is not "key:n" of this key, or the message is a first delivery out of its
// key's order. Messages without a key have no order: they are only counted.
func (o *Order) Add(id, key string, payload []byte) error {
	if o.seen == nil {
		o.next, o.seen = map[string]int{}, map[string]bool{}
	}
	if o.seen[id] {
		o.dups++
		return nil
	}
	if key == "" {
		o.seen[id] = true
		return nil
	}
	pk, n, ok := ParsePayload(payload)
	if !ok || pk != key {
		return fmt.Errorf("payload %q delivered with key %q (want \"%s:n\")", payload, key, key)
	}
	if want := o.next[key]; n != want {
		return fmt.Errorf("key %s: got n %d, want %d (order violated: a message lost or overtaken)", key, n, want)
	}
	o.seen[id] = true
	o.next[key] = n + 1
	return nil
}

// AddRecord is Add for a delivered record.
func (o *Order) AddRecord(r *outbox.Record) error {
	return o.Add(r.ID.String(), r.Key, r.Payload)
}

// Unique is the number of distinct messages delivered.
func (o *Order) Unique() int { return len(o.seen) }

// Duplicates is the number of deliveries of messages delivered before.
func (o *Order) Duplicates() int { return o.dups }

// Next is the n the next first delivery of key must carry: how many of its messages were
// delivered.
func (o *Order) Next(key string) int { return o.next[key] }

// CheckOrder fails the test unless the first deliveries of each key (of records with
// payloads "key:n") arrived in the key's order; it returns the number of duplicates. Unkeyed
// records are only counted.
func CheckOrder(tb testing.TB, delivered []outbox.Record) (dups int) {
	tb.Helper()
	var o Order
	for i := range delivered {
		if err := o.AddRecord(&delivered[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return o.Duplicates()
}

// CheckDelivered fails the test unless delivered holds every message of sent (none lost) and
// nothing else, first deliveries in per-key order (payloads "key:n"); it returns the number
// of duplicates. sent are the messages as enqueued (their ids set, as Source.Enqueue and
// outbox.Enqueue set them).
func CheckDelivered(tb testing.TB, sent []outbox.Message, delivered []outbox.Record) (dups int) {
	tb.Helper()
	want := make(map[string]bool, len(sent))
	for _, m := range sent {
		want[m.ID.String()] = true
	}
	for _, r := range delivered {
		if !want[r.ID.String()] {
			tb.Fatalf("delivered %q (id %s, key %q), which was not sent", r.Payload, r.ID, r.Key)
		}
	}
	dups = CheckOrder(tb, delivered)
	if got := len(delivered) - dups; got != len(want) {
		var lost []string
		seen := map[string]bool{}
		for _, r := range delivered {
			seen[r.ID.String()] = true
		}
		for _, m := range sent {
			if !seen[m.ID.String()] && len(lost) < 10 {
				lost = append(lost, fmt.Sprintf("%q", m.Payload))
			}
		}
		tb.Fatalf("%d of %d messages delivered; lost: %s", got, len(want), strings.Join(lost, ", "))
	}
	return dups
}
