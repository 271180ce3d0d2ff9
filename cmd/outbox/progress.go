package main

import (
	"github.com/outboxgo/outbox/cmd/outbox/internal/progress"
)

// progress returns the reporter of a long operation on standard error: a bar when it is a
// terminal, plain lines otherwise, nil (nothing) when off (--json, --no-progress).
func (a *app) progress(off bool, label string, total int64) *progress.Reporter {
	if off {
		return nil
	}
	var opts []progress.Option
	if a.progressInterval != 0 {
		opts = append(opts, progress.WithInterval(a.progressInterval))
	}
	return progress.New(a.stderr, progress.IsTerminal(a.stderr), label, total, opts...)
}
