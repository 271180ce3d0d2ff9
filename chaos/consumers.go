package chaos

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// inboxConsumer is the inbox consumer name every consumer process of a run shares.
const inboxConsumer = "chaos-inbox"

// inboxBroker is a broker whose inbox adapter is wired into the checker (ConsumerSinks).
type inboxBroker interface {
	// inboxSetup prepares what the consumer processes subscribe through, where the run must
	// make it (a queue of their own), and returns the adapter's settings (ConsumerSpec.Broker)
	// for process i: the broker reached through its fault proxy, where it has one.
	inboxSetup(ctx context.Context, processes int) (func(i int) map[string]string, error)
	// inboxProcesses is how many consumer processes the run starts when asked for n: fewer
	// where more would not keep a key's order.
	inboxProcesses(n int) int
	// inboxNotes say how the consumers subscribe and what order their configuration promises.
	inboxNotes(processes int) []string
}

// effectRow is one row of the effects table.
type effectRow struct {
	messageID string
	key       string
	seq       int
	apply     int64
	process   int
}

// buildConsumer compiles the consumer program into dir. It must run inside the module.
func buildConsumer(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "outbox-chaos-consumer")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/outboxgo/outbox/chaos/cmd/outbox-chaos-consumer")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the consumer program (run inside the module, or pass the binary): %v\n%s", err, out)
	}
	return bin, nil
}

// startConsumers creates the consumers' tables and subscription and starts the consumer
// processes.
func (r *run) startConsumers(ctx context.Context, rep *Report, t0 time.Time) error {
	cfg := r.cfg
	ib, ok := r.brk.(inboxBroker)
	if !ok {
		return fmt.Errorf("the %s broker has no inbox adapter wiring", cfg.Sink) // validate refuses it
	}
	bin := cfg.ConsumerBinary
	if bin == "" {
		r.log.Info("building the consumer program")
		var err error
		if bin, err = buildConsumer(ctx, r.workDir); err != nil {
			return err
		}
	}
	in, err := r.db.setupConsumers(ctx)
	if err != nil {
		return fmt.Errorf("creating the consumers' tables: %w", err)
	}
	r.inbox = in
	n := ib.inboxProcesses(cfg.Consumers)
	rep.Consumers = n
	settings, err := ib.inboxSetup(ctx, n)
	if err != nil {
		return fmt.Errorf("subscribing the consumers: %w", err)
	}
	dbURL, err := r.db.consumerDB(r.dbProxy.Addr())
	if err != nil {
		return err
	}
	inboxTable, effects, counters := r.db.consumerTables()
	specs := make([]string, n)
	for i := range n {
		dialect, url := dbURL(i)
		b, err := json.Marshal(ConsumerSpec{
			Process: i, Sink: cfg.Sink, Dialect: dialect, DatabaseURL: url,
			InboxTable: inboxTable, EffectsTable: effects, CountersTable: counters,
			Consumer: inboxConsumer, MaxAttempts: consumerMaxAttempts, Broker: settings(i),
		})
		if err != nil {
			return err
		}
		specs[i] = ConsumerSpecEnv + "=" + string(b)
	}
	rep.Notes = append(rep.Notes, ib.inboxNotes(n)...)
	rep.Notes = append(rep.Notes, fmt.Sprintf("consumers: %d processes of chaos/cmd/outbox-chaos-consumer, inbox consumer %q in table %s, max_attempts %d, backoff 100ms–1s; the effect (a row in %s with the key's apply number from %s) commits with the inbox; the database through its fault proxy", n, inboxConsumer, inboxTable, consumerMaxAttempts, effects, counters))
	if n < cfg.Consumers {
		rep.Notes = append(rep.Notes, fmt.Sprintf("consumers: %d asked for, %d run: more processes would not keep a key's order on %s", cfg.Consumers, n, cfg.Sink))
	}
	r.consumers = &relayProcs{bin: bin, args: []string{"consume"}, name: "consumer", dir: r.workDir, logger: r.log, start: t0,
		env: func(i int) []string { return []string{specs[i]} }}
	return startRelays(r.consumers, n)
}

// waitEffects waits until every committed message has an effect; false when ctx ended first.
func (r *run) waitEffects(ctx context.Context, led *ledger) bool {
	for {
		rows, err := r.db.effects(ctx)
		if err == nil {
			have := make(map[string]bool, len(rows))
			for _, e := range rows {
				have[e.messageID] = true
			}
			led.mu.Lock()
			missing := 0
			for i := range led.entries {
				if e := &led.entries[i]; e.inDB && !have[e.id.String()] {
					missing++
				}
			}
			led.mu.Unlock()
			if missing == 0 {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// verifyEffects checks the effects table against the committed messages (judgeEffects) and
// reads the inbox's dead letters.
func (r *run) verifyEffects(ctx context.Context, rep *Report, led *ledger) {
	var rows []effectRow
	if err := retry(ctx, func() error {
		var err error
		rows, err = r.db.effects(ctx)
		return err
	}); err != nil {
		rep.Notes = append(rep.Notes, "reading the effects: "+err.Error())
		rep.EffectsUnreadable = true
	} else {
		judgeEffects(rep, led, rows)
	}
	if err := retry(ctx, func() error {
		ds, err := r.inbox.DeadLetters(ctx, 0, 1000)
		rep.InboxDeadLetters = len(ds)
		rep.InboxDeadSample = rep.InboxDeadSample[:0]
		for _, d := range ds {
			if len(rep.InboxDeadSample) < sampleLimit {
				rep.InboxDeadSample = append(rep.InboxDeadSample, fmt.Sprintf("%s key %s after %d attempts: %s", d.Message.ID, d.Message.Key, d.Attempts, d.Error))
			}
		}
		return err
	}); err != nil {
		rep.Notes = append(rep.Notes, "reading the inbox's dead letters: "+err.Error())
		rep.InboxDeadUnreadable = true
	}
}

// judgeEffects fills the report's effect figures from the effects table's rows: each
// committed message has exactly one effect, no other message has any, and each key's
// effects, in the order of their apply numbers, carry increasing sequence numbers (the first
// effect of each message: a second one is counted as applied twice).
func judgeEffects(rep *Report, led *ledger, rows []effectRow) {
	led.mu.Lock()
	defer led.mu.Unlock()
	committed := make(map[string]int, len(led.entries))
	for i := range led.entries {
		if e := &led.entries[i]; e.inDB {
			committed[e.id.String()] = i
		}
	}
	ns := func(i int) float64 { return float64(led.entries[i].commitNs-led.start.UnixNano()) / 1e9 }
	byID := make(map[string][]effectRow, len(rows))
	for _, e := range rows {
		byID[e.messageID] = append(byID[e.messageID], e)
	}
	rep.EffectsApplied = len(rows)
	rep.EffectsByProcess = make([]int, rep.Consumers)
	for _, e := range rows {
		if e.process >= 0 && e.process < len(rep.EffectsByProcess) {
			rep.EffectsByProcess[e.process]++
		}
	}
	ids := make([]string, 0, len(committed))
	for id := range committed {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int { return committed[a] - committed[b] })
	for _, id := range ids {
		i, es := committed[id], byID[id]
		e := &led.entries[i]
		switch {
		case len(es) == 0:
			rep.EffectsMissing++
			if len(rep.EffectsMissingSample) < sampleLimit {
				rep.EffectsMissingSample = append(rep.EffectsMissingSample, fmt.Sprintf("%s key %s seq %d committed at %.3fs, delivered %d times to the raw consumer", id, keyName(int(e.key)), e.seq, ns(i), e.copies))
			}
		case len(es) > 1:
			rep.EffectsDouble++
			rep.EffectsDoubleRows += len(es) - 1
			if len(rep.EffectsDoubleSample) < sampleLimit {
				var ps []string
				for _, x := range es {
					ps = append(ps, fmt.Sprintf("apply %d by process %d", x.apply, x.process))
				}
				rep.EffectsDoubleSample = append(rep.EffectsDoubleSample, fmt.Sprintf("%s key %s seq %d applied %d times: %s", id, keyName(int(e.key)), e.seq, len(es), strings.Join(ps, ", ")))
			}
		}
	}

	byKey := map[string][]effectRow{}
	for _, e := range rows {
		if _, ok := committed[e.messageID]; !ok {
			rep.EffectsUnknown++
			if len(rep.EffectsUnknownSample) < sampleLimit {
				rep.EffectsUnknownSample = append(rep.EffectsUnknownSample, fmt.Sprintf("%s key %s seq %d apply %d by process %d", e.messageID, e.key, e.seq, e.apply, e.process))
			}
			continue
		}
		byKey[e.key] = append(byKey[e.key], e)
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		es := byKey[k]
		slices.SortFunc(es, func(a, b effectRow) int { return cmp.Compare(a.apply, b.apply) })
		seen := map[string]bool{}
		maxSeq, maxApply := -1, int64(0)
		for _, e := range es {
			if seen[e.messageID] {
				continue
			}
			seen[e.messageID] = true
			if e.seq <= maxSeq {
				rep.EffectsOutOfOrder++
				if len(rep.EffectsOrderSample) < sampleLimit {
					rep.EffectsOrderSample = append(rep.EffectsOrderSample, fmt.Sprintf("key %s: seq %d (%s, apply %d by process %d) applied after seq %d (apply %d)", k, e.seq, e.messageID, e.apply, e.process, maxSeq, maxApply))
				}
				continue
			}
			maxSeq, maxApply = e.seq, e.apply
		}
	}
}
