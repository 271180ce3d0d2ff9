package outbox_test

import (
	"testing"

	"github.com/outboxgo/outbox"
)

func TestOutcomeCheckHeld(t *testing.T) {
	held := func(seq int64) bool { return seq < 10 }
	for _, c := range []struct {
		name string
		o    outbox.Outcome
		ok   bool
	}{
		{"empty", outbox.Outcome{}, true},
		{"all held", outbox.Outcome{Published: []int64{1}, Retry: []outbox.Retry{{Seq: 2}}, Dead: []outbox.Dead{{Seq: 3}}}, true},
		{"published", outbox.Outcome{Published: []int64{1, 10}}, false},
		{"retry", outbox.Outcome{Retry: []outbox.Retry{{Seq: 11}}}, false},
		{"dead", outbox.Outcome{Dead: []outbox.Dead{{Seq: 12}}}, false},
	} {
		if err := c.o.CheckHeld(held); (err == nil) != c.ok {
			t.Errorf("%s: CheckHeld = %v, want ok %v", c.name, err, c.ok)
		}
	}
}
