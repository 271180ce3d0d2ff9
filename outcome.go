package outbox

import (
	"fmt"
	"time"
)

// Outcome is what happened to the records of a claim: the relay reports it to the store (see
// package dialect) or to a log source, which applies it.
type Outcome struct {
	// Published were acknowledged by their sink: deleted, or marked published when retaining.
	Published []int64
	// Retry failed with a retryable error: attempts+1, available again after Delay.
	Retry []Retry
	// Dead go to the dead-letter table with their error.
	Dead []Dead
	// Duplicates are messages of Published that their broker acknowledged as duplicates of a
	// message it already held (sink.ErrDuplicate): the store counts them
	// (dialect.Stats.BrokerDuplicates).
	Duplicates []int64
}

// CheckHeld returns an error naming the first message of o for which held is false: a store's
// Finish refuses an outcome about messages its claim does not hold.
func (o Outcome) CheckHeld(held func(seq int64) bool) error {
	for _, seq := range o.Published {
		if !held(seq) {
			return fmt.Errorf("message %d is not in this claim", seq)
		}
	}
	for _, r := range o.Retry {
		if !held(r.Seq) {
			return fmt.Errorf("message %d is not in this claim", r.Seq)
		}
	}
	for _, d := range o.Dead {
		if !held(d.Seq) {
			return fmt.Errorf("message %d is not in this claim", d.Seq)
		}
	}
	return nil
}

// Retry schedules another attempt.
type Retry struct {
	Seq   int64
	Delay time.Duration
	Error string
	// NotAttempted says the message was not published at all (its sink is unavailable, see
	// sink.ErrUnavailable): attempts stay as they are; only the delay and the error are
	// written.
	NotAttempted bool
}

// Dead moves a message to the dead-letter table.
type Dead struct {
	Seq   int64
	Error string
}
