package relay

import (
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
)

// Pausing a destination whose sink is unavailable (sink.ErrUnavailable): the first probe
// comes after probeBase, each failed probe doubles the wait, up to MaxProbeInterval; every
// wait is jittered (between half and all of it) so relays don't probe in step.
const (
	probeBase = time.Second
	// DefaultMaxProbeInterval is the longest wait between two probes of an unavailable sink.
	DefaultMaxProbeInterval = 30 * time.Second
)

// pauses tracks, per destination (a route's sink, or the one sink), whether it is paused
// after sink-wide failures, and lets one probe through at a time when its wait is over.
type pauses struct {
	logger   *slog.Logger
	maxProbe time.Duration
	summary  time.Duration // how often a pause that lasts is summarised

	mu sync.Mutex
	m  map[string]*destPause
}

type destPause struct {
	since   time.Time // when the outage began
	until   time.Time // no publishing before then
	probes  int       // failed probes (and the failure that opened the pause)
	probing bool      // a probe is in flight
	err     string    // the last sink-wide error
	wait    time.Duration

	held     int64     // messages held back since the last summary
	oldest   time.Time // created_at of the oldest of them
	reported time.Time // last summary
}

// admission is what a worker may do with one destination's messages now.
type admission struct {
	ok    bool      // publish (as usual, or as the probe)
	probe bool      // this publish is the probe of a paused destination
	until time.Time // when not ok: when the destination will be probed next
	err   string    // when not ok: why it is paused
}

func (p *pauses) admit(dest string, now time.Time) admission {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := p.m[dest]
	switch {
	case ps == nil:
		return admission{ok: true}
	case ps.probing || now.Before(ps.until):
		until := ps.until
		if ps.probing && !until.After(now) {
			until = now.Add(probeBase) // the probe's answer decides; look again soon
		}
		return admission{until: until, err: ps.err}
	default:
		ps.probing = true
		return admission{ok: true, probe: true}
	}
}

// failed records that every message sent to dest in one publish failed with a sink-wide
// error: dest pauses (or stays paused) for the next wait, and the time it is probed next is
// returned.
func (p *pauses) failed(dest string, probe bool, err error, now time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = make(map[string]*destPause)
	}
	ps := p.m[dest]
	msg := err.Error()
	if ps == nil {
		ps = &destPause{since: now}
		p.m[dest] = ps
	} else if !probe && now.Before(ps.until) {
		// Another worker's publish, sent before the pause began: it tells nothing new.
		return ps.until
	}
	ps.probing = false
	ps.probes++
	wait := min(p.maxProbe, probeBase<<min(ps.probes-1, 20))
	wait = wait/2 + rand.N(wait/2+1)
	ps.until = now.Add(wait)
	switch {
	case ps.probes == 1:
		p.logger.Warn("sink unavailable; pausing it (messages keep their attempts)",
			slog.String("sink", dest), slog.String("error", msg), slog.Duration("probe_in", wait))
	case msg != ps.err:
		p.logger.Warn("sink still unavailable, with another error",
			slog.String("sink", dest), slog.String("error", msg), slog.Duration("down_for", now.Sub(ps.since).Round(time.Millisecond)),
			slog.Duration("probe_in", wait))
	case wait > ps.wait && ps.wait < p.maxProbe/2:
		// Each step of the growing wait once, then only the periodic failure summary.
		p.logger.Warn("sink still unavailable",
			slog.String("sink", dest), slog.Int("probes", ps.probes-1),
			slog.Duration("down_for", now.Sub(ps.since).Round(time.Millisecond)), slog.Duration("probe_in", wait))
	}
	ps.err, ps.wait = msg, wait
	return ps.until
}

// available records that dest accepted a publish (or refused a message for a reason of the
// message's own): a pause ends.
func (p *pauses) available(dest string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := p.m[dest]
	if ps == nil {
		return
	}
	delete(p.m, dest)
	p.logger.Info("sink available again; resuming",
		slog.String("sink", dest), slog.Duration("down_for", now.Sub(ps.since).Round(time.Millisecond)),
		slog.Int("failed_probes", ps.probes-1))
}

// hold notes that n messages for dest, the oldest created at oldest, wait for its pause to
// end, and summarises the pause in the log at most once per summary interval.
func (p *pauses) hold(dest string, n int, oldest, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ps := p.m[dest]
	if ps == nil {
		return
	}
	ps.held += int64(n)
	if !oldest.IsZero() && (ps.oldest.IsZero() || oldest.Before(ps.oldest)) {
		ps.oldest = oldest
	}
	if ps.reported.IsZero() {
		ps.reported = ps.since
	}
	if now.Sub(ps.reported) < p.summary {
		return
	}
	attrs := []any{slog.String("sink", dest), slog.String("error", ps.err),
		slog.Duration("down_for", now.Sub(ps.since).Round(time.Second)),
		slog.Int64("messages_held", ps.held), slog.Int("failed_probes", ps.probes-1)}
	if !ps.oldest.IsZero() {
		attrs = append(attrs, slog.Duration("oldest_message_age", now.Sub(ps.oldest).Round(time.Millisecond)))
	}
	p.logger.Warn("sink still unavailable; messages wait for it", attrs...)
	ps.held, ps.oldest, ps.reported = 0, time.Time{}, now
}

// nextProbe is when a message that met an unavailable dest should be tried again: the pause's
// next probe, or, when dest is not paused (other messages of the same publish went through),
// a jittered maxProbe from now.
func (p *pauses) nextProbe(dest string, now time.Time, maxProbe time.Duration) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps := p.m[dest]; ps != nil && ps.until.After(now) {
		return ps.until
	}
	return now.Add(maxProbe/2 + rand.N(maxProbe/2+1))
}

// release ends a probe that was admitted but never sent (shutdown, batch deadline).
func (p *pauses) release(dest string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ps := p.m[dest]; ps != nil {
		ps.probing = false
	}
}

// PausedSink is a destination the relay stopped publishing to after sink-wide failures
// (sink.ErrUnavailable): its messages wait with their attempts unchanged, and one publish
// probes it at NextProbe.
type PausedSink struct {
	Name      string    // the destination: a route's sink name, or Config.SinkName
	Since     time.Time // when the outage began
	NextProbe time.Time // when the next probe may go out (past while a probe is in flight)
	Probes    int       // failed probes since the outage began
	Error     string    // the last sink-wide error
}

// Paused returns the destinations paused now, sorted by name: none while every sink takes
// messages. It is safe to call concurrently with Run, for health checks and metrics.
func (r *Relay) Paused() []PausedSink {
	r.pauses.mu.Lock()
	defer r.pauses.mu.Unlock()
	out := make([]PausedSink, 0, len(r.pauses.m))
	for name, ps := range r.pauses.m {
		out = append(out, PausedSink{Name: name, Since: ps.since, NextProbe: ps.until, Probes: ps.probes - 1, Error: ps.err})
	}
	slices.SortFunc(out, func(a, b PausedSink) int { return strings.Compare(a.Name, b.Name) })
	return out
}
