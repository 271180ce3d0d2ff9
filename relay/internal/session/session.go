// Package session runs a log-tailing source (relay/wal, relay/binlog) as a series of
// sessions, one connection to the log at a time: a session that failed, or found the log held
// by another relay, is followed by another after a pause, until the source's context ends, the
// source crashes (a test hook), or a session finds a configuration problem that retrying
// cannot fix (a SetupError).
package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/outboxgo/outbox/relay"
)

// SetupError is a configuration problem found on the server (the log off, a missing table, a
// slot made for another plugin): retrying cannot fix it, so Loop.Run returns it.
type SetupError struct{ Err error }

func (e *SetupError) Error() string { return e.Err.Error() }
func (e *SetupError) Unwrap() error { return e.Err }

// SetupErrorf returns a SetupError formatted as fmt.Errorf does.
func SetupErrorf(format string, args ...any) error {
	return &SetupError{Err: fmt.Errorf(format, args...)}
}

// IsSetup reports whether err is, or wraps, a SetupError.
func IsSetup(err error) bool {
	var se *SetupError
	return errors.As(err, &se)
}

// Loop describes the sessions of a source.
type Loop struct {
	// Session runs one session until ctx ends (it drains and returns) or the session fails.
	Session func(ctx context.Context) error
	// Failed is told of a session's failure that retrying may fix, before the pause: the
	// source forgets what the session read, counts and logs.
	Failed func(err error)
	// Interval is the pause between sessions.
	Interval time.Duration
	// Crashed, once closed, ends Run with ErrCrashed after the session (a test hook that
	// simulates a crash).
	Crashed    <-chan struct{}
	ErrCrashed error
}

// Run runs sessions until ctx ends (it returns nil), the source crashed (ErrCrashed), or a
// session returned a SetupError (returned).
func (l Loop) Run(ctx context.Context) error {
	for {
		err := l.Session(ctx)
		select {
		case <-l.Crashed:
			return l.ErrCrashed
		default:
		}
		if ctx.Err() != nil {
			return nil
		}
		if IsSetup(err) {
			return err
		}
		l.Failed(err)
		if relay.Sleep(ctx, l.Interval) != nil {
			return nil
		}
	}
}
