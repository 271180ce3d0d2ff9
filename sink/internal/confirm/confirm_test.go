package confirm

import (
	"errors"
	"testing"
)

// TestAbandon: once Publish has returned, late results do not touch its slice.
func TestAbandon(t *testing.T) {
	t.Parallel()
	res := make([]error, 2)
	b := New(res)
	b.Start()
	b.Pending(0)
	unsent, pending := errors.New("unsent"), errors.New("pending")
	if stuck := b.Abandon(unsent, pending); !stuck {
		t.Error("Abandon with a pending message reported nothing stuck")
	}
	if res[0] != pending || res[1] != unsent {
		t.Fatalf("abandon: %v", res)
	}
	b.Confirm(0, nil)
	b.Stop(0, errors.New("late"))
	if res[0] != pending || res[1] != unsent {
		t.Errorf("late results overwrote the caller's: %v", res)
	}
}

// TestLifecycle: refused messages are skipped and keep their error; the batch is done only
// when every sent message is settled and the sender has finished.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	res := make([]error, 4)
	b := New(res)
	refused := errors.New("too large")
	b.Refuse(1, refused)
	if !b.Skip(1) || b.Skip(0) || b.Sendable() != 3 {
		t.Fatalf("Skip/Sendable after one refusal: %v %v %d", b.Skip(1), b.Skip(0), b.Sendable())
	}
	b.Start()
	b.Pending(0)
	b.Pending(2)
	b.Confirm(0, nil)
	b.Confirm(0, errors.New("twice")) // settled already: ignored
	lost := errors.New("lost")
	b.Lost(2, lost, errors.New("rest"))
	if isDone(b) {
		t.Fatal("done while the sender still runs")
	}
	b.EndSending()
	if !isDone(b) {
		t.Fatal("not done after every message settled and the sender ended")
	}
	if res[0] != nil || res[1] != refused || res[2] != lost || res[3] == nil || res[3].Error() != "rest" {
		t.Fatalf("results: %v", res)
	}
	b.Fail(3, errors.New("late")) // settled already: ignored
	if res[3].Error() != "rest" {
		t.Errorf("Fail overwrote a settled result: %v", res[3])
	}
}

func isDone(b *Batch) bool {
	select {
	case <-b.Done():
		return true
	default:
		return false
	}
}
