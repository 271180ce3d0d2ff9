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

// progressHook is progress for an operation that learns its total when it starts and reports
// its running total: hook(done, total) creates the reporter on its first call and sets the
// count; finish ends the report (nothing when hook was never called).
func (a *app) progressHook(off bool, label string) (hook func(done, total int64), finish func()) {
	var p *progress.Reporter
	started := false
	hook = func(done, total int64) {
		if !started {
			started = true
			p = a.progress(off, label, total)
		}
		p.Set(done)
	}
	return hook, func() { p.Finish() }
}
