package poll

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/outboxgo/outbox/dialect"
)

// The wait of a worker that found nothing new, with a store whose commits notify only while a
// relay says it waits (dialect.WakeGate). A worker first lingers: it claims again after
// lingerSteps, which under load finds the next commits without anybody notifying. After
// them, it opens the gate (commits notify from then on), claims once more, waits out the
// transactions that may have inserted before the gate opened, and then waits for a
// notification or its poll interval. The relay keeps the gate open, renewing its lease, while
// any of its workers waits, and shuts it when the last of them wakes: under load no commit
// notifies. Its clock ticks (AdvanceGate) let the leases of relays that stopped renewing run
// out.
var lingerSteps = [...]time.Duration{time.Millisecond, time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond,
	8 * time.Millisecond, 8 * time.Millisecond}

const (
	// gateLease is how long one opening of the gate lasts; gateRenew how often a relay
	// renews it while a worker waits, and moves the gate's clock while none does.
	gateLease = 150 * time.Millisecond
	gateRenew = 40 * time.Millisecond
	// maxLinger bounds how long a worker that found messages lately keeps claiming, every
	// last linger step, before it opens the gate.
	maxLinger = 250 * time.Millisecond
	// pendingCheck bounds the wait between checks of the transactions that were in progress
	// when the gate opened, for pendingFast; after that the poll interval does.
	pendingCheck = 16 * time.Millisecond
	pendingFast  = time.Second
	// noGateRecheck is how long a relay takes a schema without the gate for one.
	noGateRecheck = time.Minute
)

// rest is one worker slot's progress through its wait; only the worker holding the slot
// touches it.
type rest struct {
	lingered int           // linger steps taken since the slot last found messages
	active   time.Time     // when the slot began finding messages after its last wait at the gate
	worked   time.Time     // when it last found messages
	open     bool          // the slot opened the gate and counts among the waiting
	epoch    uint64        // s.gateEpoch when the slot opened the gate
	pending  []uint64      // transactions in progress when it did, still to wait out
	backoff  time.Duration // the next wait for them
	opened   time.Time     // when it last opened the gate
}

// busy resets slot's wait: its claim found messages.
func (s *Source) busy(slot int) {
	r := &s.rests[slot]
	now := time.Now()
	active := r.active
	if r.open || active.IsZero() {
		active = now // back from a wait at the gate: a new stretch of work
	}
	if r.open && s.waiting.Add(-1) == 0 {
		select {
		case s.gateWoke <- struct{}{}: // shut the gate
		default:
		}
	}
	*r = rest{active: active, worked: now}
}

// lingering reports whether the slot should claim again before it opens the gate: it has not
// taken every linger step yet, or it has been finding messages for long and found some
// lately. A worker that found messages for a second lingers 125 ms: a stall of the producers'
// commits (a slow fsync, a busy machine) does not open the gate under a steady load, after
// which every commit would notify, one at a time.
func (r *rest) lingering() bool {
	if r.lingered < len(lingerSteps) {
		return true
	}
	budget := min(r.worked.Sub(r.active)/8, maxLinger)
	return time.Since(r.worked) < budget
}

// gated reports whether workers wait through the gate: the store has one, notifications are
// on and the listener runs. A schema found without one (before migration 6, whose trigger
// notifies every commit) is asked again after noGateRecheck, in case it was migrated since.
func (s *Source) gated() bool {
	if s.gate == nil || !s.listening.Load() {
		return false
	}
	at := s.noGateAt.Load()
	return at == 0 || time.Now().UnixNano()-at > int64(noGateRecheck)
}

// rest waits before slot's next claim after one that found nothing new (or read its whole
// share). Without the gate it waits for a notification or the poll interval.
func (s *Source) rest(ctx context.Context, slot int) error {
	if !s.gated() {
		_, err := s.idle(ctx, slot, s.cfg.PollInterval)
		return err
	}
	r := &s.rests[slot]
	if r.lingering() {
		d := min(lingerSteps[min(r.lingered, len(lingerSteps)-1)], s.cfg.PollInterval)
		r.lingered++
		_, err := s.idle(ctx, slot, d)
		return err
	}
	if !r.open || r.epoch != s.gateEpoch.Load() {
		// Open the gate, then claim once more at once: that claim sees every commit made
		// before it opened.
		epoch := s.gateEpoch.Load()
		pending, err := s.openGate(ctx, r)
		switch {
		case errors.Is(err, dialect.ErrNoGate):
			// An older schema whose trigger always notifies: wait for it.
			if s.noGateAt.Swap(time.Now().UnixNano()) == 0 {
				s.logger.Info("the outbox table has no wake-up gate (migration 6): every commit notifies")
			}
			_, err := s.idle(ctx, slot, s.cfg.PollInterval)
			return err
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.logger.Warn("opening the wake-up gate failed; commits may not wake this worker before its poll interval",
				slog.Any("error", err))
			_, err := s.idle(ctx, slot, s.cfg.PollInterval)
			return err
		}
		s.noGateAt.Store(0)
		r.epoch, r.pending, r.backoff, r.opened = epoch, pending, lingerSteps[0], time.Now()
		return nil
	}
	// Transactions that may have inserted before the gate opened did not notify: claim again
	// whenever some of them have ended, until none is left.
	for len(r.pending) > 0 {
		woken, err := s.idle(ctx, slot, r.backoff)
		if err != nil || woken {
			return err
		}
		// Checked often at first (a producer's transaction is short), then, past a
		// second, as rarely as the poll interval: one that stays open (a session idle in
		// a transaction) must not cost a query every few milliseconds for hours.
		limit := pendingCheck
		if time.Since(r.opened) > pendingFast {
			limit = s.cfg.PollInterval
		}
		r.backoff = min(2*r.backoff, limit, s.cfg.PollInterval)
		running, err := s.gate.Running(ctx, r.pending)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.logger.Warn("checking transactions in progress failed", slog.Any("error", err))
			return nil // claim again; the check is retried after the next empty claim
		}
		if len(running) < len(r.pending) {
			r.pending = running
			return nil
		}
	}
	_, err := s.idle(ctx, slot, s.cfg.PollInterval)
	return err
}

// openGate counts r's slot among the waiting, opens the gate for gateLease, records until when
// it is surely open, and lists the transactions then in progress.
func (s *Source) openGate(ctx context.Context, r *rest) ([]uint64, error) {
	s.gateMu.Lock()
	joined := !r.open
	if joined {
		r.open = true
		s.waiting.Add(1)
	}
	sent := time.Now()
	_, err := s.gate.OpenGate(ctx, gateLease)
	switch {
	case err == nil:
		s.extendLease(sent)
	case joined:
		r.open = false
		s.waiting.Add(-1)
	}
	s.gateMu.Unlock()
	if err != nil {
		return nil, err
	}
	return s.gate.InProgress(ctx)
}

// extendLease records that a gate opened at sent (or later, by the database's clock) stays
// open until sent+gateLease.
func (s *Source) extendLease(sent time.Time) {
	until := sent.Add(gateLease).UnixNano()
	for {
		old := s.leaseUntil.Load()
		if until <= old || s.leaseUntil.CompareAndSwap(old, until) {
			return
		}
	}
}

// keepGateOpen runs the relay's side of the gate until ctx ends. While a worker waits it
// renews the lease; a renewal that finds the gate was shut (another relay closed it, or the
// lease ran out: a stalled process, a slow database) or fails means commits may have gone
// unnotified: the waiting workers then claim again and reopen the gate, waiting out what was
// in progress. When the last waiting worker wakes it shuts the gate (so that a load's commits
// stop notifying at once), and while none waits it moves the gate's clock.
func (s *Source) keepGateOpen(ctx context.Context) {
	t := time.NewTicker(gateRenew)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// Stopping: shut the gate this relay holds open, for no relay may be left to let
			// its lease run out (the others' renewals find it shut and reopen it).
			if s.waiting.Load() > 0 {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
				_ = s.gate.CloseGate(cctx)
				cancel()
			}
			return
		case <-s.gateWoke:
			s.gateMu.Lock()
			if s.waiting.Load() == 0 {
				if err := s.gate.CloseGate(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, dialect.ErrNoGate) {
					s.logger.Warn("closing the wake-up gate failed", slog.Any("error", err))
				}
			}
			s.gateMu.Unlock()
			continue
		case <-t.C:
		}
		if s.waiting.Load() == 0 {
			if s.noGateAt.Load() == 0 {
				if err := s.gate.AdvanceGate(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, dialect.ErrNoGate) {
					s.logger.Warn("advancing the wake-up gate failed", slog.Any("error", err))
				}
			}
			continue
		}
		s.gateMu.Lock()
		sent := time.Now()
		lapsed := sent.UnixNano() > s.leaseUntil.Load()
		wasOpen, err := s.gate.OpenGate(ctx, gateLease)
		if err == nil {
			s.extendLease(sent)
		}
		s.gateMu.Unlock()
		if err != nil && ctx.Err() == nil {
			s.logger.Warn("renewing the wake-up gate failed", slog.Any("error", err))
		}
		if lapsed || !wasOpen || err != nil {
			s.gateEpoch.Add(1)
			s.Wake()
		}
	}
}
