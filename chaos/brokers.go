package chaos

import (
	"context"
	"errors"
	"time"
)

// broker is the sink side of a run: a broker the run owns (or a private corner of a shared
// one), the relays' settings for it, a consumer, and its faults.
type broker interface {
	// relayEnv is the relays' sink configuration (OUTBOX_SINK_*).
	relayEnv() []string
	// consume hands every delivered message to deliver, in delivery order, until ctx ends.
	consume(ctx context.Context, deliver func(delivery))
	// restart stops the broker, keeps it down for down, and starts it again with its data.
	// errNoRestart when the broker is not the run's to restart (canRestart is false).
	restart(ctx context.Context, down time.Duration) error
	canRestart() bool
	// cut severs the relays' connections to the broker and refuses new ones until restore.
	cut()
	restore()
	// sweep reads everything the broker stores, from the start, to tell messages the
	// consumer missed from lost ones. errNoSweep when the broker cannot (a queue).
	sweep(ctx context.Context, fn func(delivery)) error
	// close releases everything the broker holds.
	close()
	// notes are what the report should say about how faults map onto this broker.
	notes() []string
	// seesHeaders reports whether consume fills delivery.headers.
	seesHeaders() bool
}

var (
	errNoRestart = errors.New("this broker cannot be restarted by the checker")
	errNoSweep   = errors.New("this broker cannot be re-read")
)
