package unavail

import (
	"errors"
	"testing"

	"github.com/outboxgo/outbox/sink"
)

func TestMark(t *testing.T) {
	t.Parallel()
	wide := errors.New("down")
	own := errors.New("bad message")
	res := []error{nil, wide, own, sink.Permanent(wide), sink.Duplicate("x"), sink.Unavailable(own)}
	Mark(res, func(err error) bool { return errors.Is(err, wide) })
	if res[0] != nil {
		t.Errorf("success became %v", res[0])
	}
	if !sink.IsUnavailable(res[1]) || !errors.Is(res[1], wide) {
		t.Errorf("sink-wide failure: %v, want unavailable wrapping the cause", res[1])
	}
	if sink.IsUnavailable(res[2]) || res[2] != own {
		t.Errorf("message failure: %v, want it unchanged", res[2])
	}
	if !sink.IsPermanent(res[3]) || sink.IsUnavailable(res[3]) {
		t.Errorf("permanent failure: %v, want it still permanent", res[3])
	}
	if !sink.IsDuplicate(res[4]) || sink.IsUnavailable(res[4]) {
		t.Errorf("duplicate: %v, want it unchanged", res[4])
	}
	if !sink.IsUnavailable(res[5]) {
		t.Errorf("already unavailable: %v", res[5])
	}
}
