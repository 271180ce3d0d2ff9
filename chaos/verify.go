package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// verify compares what was committed with what was delivered and fills the report.
func (r *run) verify(ctx context.Context, rep *Report, led *ledger, classes []hostileClass, start, loadEnd, healed time.Time) error {
	led.mu.Lock()
	defer led.mu.Unlock()
	ns := func(t int64) float64 { return float64(t-start.UnixNano()) / 1e9 }

	var (
		lats                  []int64
		lost                  []int
		lastCommit, lastFirst int64
		ackedNotInDB          int
	)
	for i := range led.entries {
		e := &led.entries[i]
		if e.copies > 1 {
			rep.Duplicates += int64(e.copies - 1)
		}
		switch e.state {
		case stateRolledBack:
			rep.RolledBack++
		case stateAborted:
			rep.Aborted++
		case stateUncertain:
			if e.inDB {
				rep.UncertainCommitted++
			} else {
				rep.UncertainNotCommitted++
			}
		case stateCommitted:
			if !e.inDB {
				ackedNotInDB++
			}
		}
		if e.txStart {
			switch {
			case e.inDB:
				rep.Transactions++
			case e.state == stateRolledBack:
				rep.RolledBackTx++
			}
		}
		if !e.inDB {
			if e.copies > 0 {
				rep.Phantom++
				if e.state == stateRolledBack {
					rep.PhantomRolledBack++
				}
				if len(rep.PhantomSample) < sampleLimit {
					rep.PhantomSample = append(rep.PhantomSample, fmt.Sprintf("%s key %s (%s transaction) delivered %d times, first at %.3fs",
						e.id, keyName(int(e.key)), stateName(e.state), e.copies, ns(e.firstNs)))
				}
			}
			continue
		}
		rep.Committed++
		lastCommit = max(lastCommit, e.commitNs)
		if e.copies == 0 {
			lost = append(lost, i)
			continue
		}
		rep.Delivered++
		lastFirst = max(lastFirst, e.firstNs)
		lats = append(lats, max(0, e.firstNs-e.commitNs))
	}
	rep.Deliveries = led.deliveries
	rep.LateDuplicates = led.lateDuplicates
	rep.Unknown = led.unknown
	rep.UnknownSample = led.unknownSample
	rep.OrderViolations = led.violations
	rep.OrderViolationSample = led.violationSample
	if rep.Committed > 0 {
		rep.DuplicatePct = 100 * float64(rep.Duplicates) / float64(rep.Committed)
	}
	rep.CommitRate = float64(rep.Committed) / loadEnd.Sub(start).Seconds()
	offered := float64(len(led.entries)) / loadEnd.Sub(start).Seconds()
	if offered < 0.9*float64(r.cfg.Rate) && (r.cfg.Messages == 0 || len(led.entries) < r.cfg.Messages*9/10) {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the producers reached %.0f of the %d msg/s asked for (committed, rolled back and failed): the database or the machine is the limit", offered, r.cfg.Rate))
	}
	if ackedNotInDB > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d messages whose COMMIT succeeded have no business row: the database lost committed data", ackedNotInDB))
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		pct := func(p float64) float64 { return float64(lats[min(len(lats)-1, int(p*float64(len(lats))))]) / 1e6 }
		rep.LatencyP50MS, rep.LatencyP99MS, rep.LatencyMaxMS = pct(0.50), pct(0.99), float64(lats[len(lats)-1])/1e6
	}
	if healed.IsZero() {
		healed = loadEnd // no fault: measure from the end of the load phase
	}
	rep.LastFaultHealedSec = healed.Sub(start).Seconds()
	if lastCommit > 0 {
		rep.LastCommitSec = ns(lastCommit)
	}
	if rep.Drained && lastFirst > 0 {
		rep.DrainAfterFaultSec = max(0, ns(lastFirst)-rep.LastFaultHealedSec)
		rep.DrainAfterCommitSec = max(0, ns(lastFirst)-rep.LastCommitSec)
	} else if !rep.Drained {
		// A lower bound: the drain timed out.
		rep.DrainAfterFaultSec = time.Since(healed).Seconds()
		rep.DrainAfterCommitSec = time.Since(time.Unix(0, lastCommit)).Seconds()
	}

	stctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := retry(stctx, func() error {
		st, err := r.db.stats(stctx)
		rep.OutboxPending, rep.OutboxDeadLetters = st.Pending, st.DeadLetters
		return err
	}); err != nil {
		rep.Notes = append(rep.Notes, "reading the outbox stats: "+err.Error())
	}

	var dead []deadLetter
	if err := retry(stctx, func() error {
		var err error
		dead, err = r.db.deadLetters(stctx)
		return err
	}); err != nil {
		rep.Notes = append(rep.Notes, "reading the dead-letter table: "+err.Error())
	}
	judgeHostile(rep, led, classes, dead, r.brk.seesHeaders())
	if len(classes) > 0 && !r.brk.seesHeaders() {
		rep.Notes = append(rep.Notes, "the "+r.cfg.Sink+" consumer does not report headers: the headers of delivered hostile rows are not checked")
	}
	rep.PublishLimit = (r.maxAttempts() + 1) * int64(rep.Committed+len(led.hostile))

	if len(lost) == 0 {
		return nil
	}
	// Lost: first ask the broker whether it has them (the consumer may have missed them),
	// then what the tables say.
	led.mu.Unlock()
	found, err := r.sweep(ctx, led, lost)
	led.mu.Lock()
	switch {
	case errors.Is(err, errNoSweep):
	case err != nil:
		rep.Notes = append(rep.Notes, "re-reading the broker for lost messages: "+err.Error())
	}
	var still []int
	for _, i := range lost {
		if found[i] {
			rep.ConsumerMissed++
		} else {
			still = append(still, i)
		}
	}
	rep.Lost = len(still)
	if len(still) == 0 {
		return nil
	}
	ids := make([]string, len(still))
	byID := map[string]int{}
	for j, i := range still {
		ids[j] = led.entries[i].id.String()
		byID[ids[j]] = i
	}
	where, err := r.tableState(ctx, ids)
	if err != nil {
		rep.Notes = append(rep.Notes, "reading the table state of lost messages: "+err.Error())
	}
	for _, id := range ids {
		i := byID[id]
		e := &led.entries[i]
		m := where[id]
		m.MessageID, m.Key, m.Seq, m.CommitSec = id, keyName(int(e.key)), int(e.seq), ns(e.commitNs)
		switch m.Where {
		case "outbox":
			rep.LostInOutbox++
		case "dead_letters":
			rep.LostDeadLettered++
		default:
			m.Where = "gone"
			rep.LostGone++
		}
		if len(rep.LostSample) < sampleLimit {
			rep.LostSample = append(rep.LostSample, m)
		}
	}
	r.log.Warn("lost messages", slog.Int("lost", rep.Lost), slog.Int("in_outbox", rep.LostInOutbox),
		slog.Int("dead_lettered", rep.LostDeadLettered), slog.Int("gone", rep.LostGone))
	return nil
}

func stateName(s uint8) string {
	switch s {
	case stateCommitted:
		return "committed"
	case stateRolledBack:
		return "rolled-back"
	case stateAborted:
		return "aborted"
	case stateUncertain:
		return "commit-failed"
	}
	return "pending"
}

// sweep re-reads the broker and returns which of the lost entries it holds.
func (r *run) sweep(ctx context.Context, led *ledger, lost []int) (map[int]bool, error) {
	want := map[string]int{}
	led.mu.Lock()
	for _, i := range lost {
		want[led.entries[i].id.String()] = i
	}
	led.mu.Unlock()
	found := map[int]bool{}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := r.brk.sweep(sctx, func(d delivery) {
		if i, ok := want[d.id]; ok {
			found[i] = true
		}
	})
	return found, err
}

// tableState looks the messages up in the outbox and dead-letter tables.
func (r *run) tableState(ctx context.Context, ids []string) (map[string]LostMessage, error) {
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return r.db.lookup(qctx, ids)
}
