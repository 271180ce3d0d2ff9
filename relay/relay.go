package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/sink"
)

// Source yields committed outbox messages in batches. Batches returned to concurrent callers
// never share a key, and a batch holds its messages until Finish.
type Source interface {
	// Next blocks until a batch is ready or ctx ends.
	Next(ctx context.Context) (Batch, error)
}

// Batch is a set of messages held by one worker until Finish.
type Batch interface {
	Records() []outbox.Record
	// Finish applies the outcome (delete/mark, retry, dead-letter) and releases the batch.
	// Records in no list of the outcome are released unchanged.
	Finish(ctx context.Context, o outbox.Outcome) error
}

// Checkpointer is implemented by batches that can record acknowledged messages while they
// keep holding the rest. The relay publishes a batch in waves (one message per key per broker
// round trip) and checkpoints the messages each wave got acknowledged before the next wave
// goes out, so that a relay killed, or cut from its database, in the middle of a long batch
// publishes again only the wave it was publishing, not everything the batch had delivered.
type Checkpointer interface {
	// Checkpoint durably applies o.Published (deleted, or marked published when retaining)
	// and counts o.Duplicates, and keeps holding the batch's other messages. o.Retry and
	// o.Dead must be empty, and every message named must be of the batch and not
	// checkpointed yet. Finish still receives the checkpointed messages in its outcome (the
	// whole batch's outcome) and does not apply them again.
	//
	// An error means the batch may no longer hold its other messages (its claim ended): the
	// relay publishes nothing more of it and finishes it, and Finish then reports an error
	// unless the rest of the outcome needs no write. Whether the failed checkpoint's own
	// messages were recorded is unknown then.
	Checkpoint(ctx context.Context, o outbox.Outcome) error
}

// Recorder is implemented by sources that can record published messages outside any batch
// (relay/poll over a store implementing dialect.Recorder). When a batch's Finish fails (the
// database went away under its claim), the relay remembers the outcome and applies it when
// the messages are claimed again; with a Recorder it also records the published ones itself
// as soon as the database answers, so that a relay that takes over their share of the keys
// meanwhile does not publish them again.
type Recorder interface {
	// RecordPublished records refs as published where no claim holds them, and returns
	// the sequence numbers that need nothing more (see dialect.Recorder). An error matching
	// errors.ErrUnsupported says it never can: the relay stops asking.
	RecordPublished(ctx context.Context, refs []Ref) (done []int64, err error)
}

// Ref names one message of the outbox: its sequence number and its message id, so that a
// sequence number reused by another message is not mistaken for it.
type Ref struct {
	Seq int64
	ID  uuid.UUID
}

// Runner is implemented by sources with background work (heartbeats, cleanup). Relay.Run
// runs it alongside the workers.
type Runner interface {
	Run(ctx context.Context) error
}

// Concurrent is implemented by sources that serve a fixed number of concurrent Next callers.
// Relay uses that many workers.
type Concurrent interface {
	Concurrency() int
}

// Defaults.
const (
	DefaultMaxAttempts     = 25
	DefaultBackoffBase     = time.Second
	DefaultBackoffMax      = 5 * time.Minute
	DefaultPublishTimeout  = 30 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	DefaultBatchTimeout    = time.Minute
)

// Config configures a Relay. Source and Sink are required; the rest have working defaults.
type Config struct {
	Source Source
	Sink   sink.Sink
	// Workers is how many batches are published concurrently. Default: the source's
	// Concurrency(), else 1.
	Workers int
	// MaxAttempts is how many failed attempts send a message to the dead-letter table.
	// Default 25 (hours of retrying with the default backoff).
	MaxAttempts int
	// BackoffBase and BackoffMax shape the retry delay: full jitter over
	// min(BackoffMax, BackoffBase·2^attempts). Defaults 1s and 5m.
	BackoffBase, BackoffMax time.Duration
	// PublishTimeout bounds one Publish call. Default 30s.
	PublishTimeout time.Duration
	// BatchTimeout bounds the publishing of one batch (all its waves): what is not
	// acknowledged by then is released unchanged, so a batch of one slow hot key never holds
	// its claim (and its database transaction) open for long. Default 1m.
	BatchTimeout time.Duration
	// ShutdownTimeout is how long in-flight batches may take to finish after Run's context
	// ends; after it, unacknowledged messages are released unchanged. Default 10s.
	ShutdownTimeout time.Duration
	// Logger receives diagnostics. Default slog.Default().
	Logger *slog.Logger
	// Hooks are told about the relay's work (metrics, tracing, tests): each is called
	// through every hook interface it implements (HookBatchFinished, ...). A hook that
	// implements none of them is refused.
	Hooks []Hook
	// SinkName names the sink in logs, and is the destination that pauses when the sink is
	// unavailable (a sink implementing sink.Destinations names its own). Default "sink".
	SinkName string
	// MaxProbeInterval is the longest wait between two probes of a sink that is unavailable
	// (sink.ErrUnavailable): its messages wait without spending attempts, and the first probe
	// comes after 1s, each failed one doubling the wait up to this. Default 30s.
	MaxProbeInterval time.Duration
	// FailureSummaryInterval is how often a failure that lasts (a topic whose messages keep
	// failing, a sink that stays unavailable) is summarised in the log. Default 30s.
	FailureSummaryInterval time.Duration
	// Pauses, when set, is read every PauseInterval for the operator pauses of the outbox
	// (dialect.Pauser: the admin API's and `outbox pause`'s): the messages of a paused topic,
	// and those routed to a paused sink, are held until the pause ends, with their attempts
	// and backoff unchanged, while the other topics and sinks flow; the key order holds (a
	// later message of a held message's key waits too). A source implementing TopicExcluder
	// (relay/poll) leaves them in the table; other sources' held messages wait in the source
	// (outbox.Retry.NotAttempted, a pause interval at a time). A failed read keeps the
	// pauses read before. Operator pauses are not outages: Paused does not list them
	// (OperatorPauses does), and no probe goes out.
	Pauses PauseLister
	// PauseInterval is how often Pauses is read, so how long a pause or a resume takes to
	// reach this relay. Default 2s.
	PauseInterval time.Duration
}

// Relay moves messages from a Source to a Sink: per-key order, retries with persisted
// backoff, dead letters. Create with New, start with Run.
type Relay struct {
	cfg    Config
	logger *slog.Logger
	hooks  hooks

	unrecorded unrecorded // outcomes a failed Finish could not write
	pauses     pauses     // destinations paused while unavailable
	operator   operator   // operator pauses (Config.Pauses)
	failures   failureLog // retryable failures, for the log
}

var errShutdown = errors.New("relay shutting down")

// New validates cfg and returns a Relay.
func New(cfg Config) (*Relay, error) {
	if cfg.Source == nil {
		return nil, &outbox.ConfigError{Field: "source", Reason: "required"}
	}
	if cfg.Sink == nil {
		return nil, &outbox.ConfigError{Field: "sink", Reason: "required"}
	}
	if c, ok := cfg.Source.(Concurrent); ok {
		if cfg.Workers == 0 {
			cfg.Workers = c.Concurrency()
		}
		if cfg.Workers < c.Concurrency() {
			// A worker keeps its source slot while it finds nothing: with fewer workers
			// than slots, some keys would never be claimed.
			return nil, &outbox.ConfigError{Field: "workers",
				Reason: fmt.Sprintf("must be at least the source's concurrency (%d)", c.Concurrency())}
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	hks, err := newHooks(cfg.Hooks)
	if err != nil {
		return nil, err
	}
	logger := cmp.Or(cfg.Logger, slog.Default())
	return &Relay{cfg: cfg, logger: logger, hooks: hks, unrecorded: unrecorded{kick: make(chan struct{}, 1)},
		pauses:   pauses{logger: logger, maxProbe: cfg.MaxProbeInterval, summary: cfg.FailureSummaryInterval},
		failures: failureLog{logger: logger, interval: cfg.FailureSummaryInterval},
	}, nil
}

// Validate reports the first invalid setting of c as an *outbox.ConfigError naming the field
// in snake_case (max_attempts, backoff_max, ...). Zero values are valid: New replaces them by
// their defaults. Source and Sink are not checked, nor Workers against the source's
// concurrency, so that a configuration can be checked before they exist; New does that.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Workers < 0:
		return &outbox.ConfigError{Field: "workers", Reason: "must be positive"}
	case c.MaxAttempts < 1:
		return &outbox.ConfigError{Field: "max_attempts", Reason: "must be at least 1"}
	case c.BackoffBase < 0:
		return &outbox.ConfigError{Field: "backoff_base", Reason: "must be positive"}
	case c.BackoffMax < c.BackoffBase:
		return &outbox.ConfigError{Field: "backoff_max", Reason: "must be at least backoff_base, both positive"}
	case c.PublishTimeout < 0:
		return &outbox.ConfigError{Field: "publish_timeout", Reason: "must be positive"}
	case c.ShutdownTimeout < 0:
		return &outbox.ConfigError{Field: "shutdown_timeout", Reason: "must be positive"}
	case c.BatchTimeout < 0:
		return &outbox.ConfigError{Field: "batch_timeout", Reason: "must be positive"}
	case c.MaxProbeInterval < probeBase:
		return &outbox.ConfigError{Field: "max_probe_interval", Reason: "must be at least 1s"}
	case c.FailureSummaryInterval < 0:
		return &outbox.ConfigError{Field: "failure_summary_interval", Reason: "must be positive"}
	case c.PauseInterval < 0:
		return &outbox.ConfigError{Field: "pause_interval", Reason: "must be positive"}
	}
	return nil
}

// withDefaults returns c with its zero settings replaced by the defaults.
func (c Config) withDefaults() Config {
	c.Workers = cmp.Or(c.Workers, 1)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, DefaultMaxAttempts)
	c.BackoffBase = cmp.Or(c.BackoffBase, DefaultBackoffBase)
	c.BackoffMax = cmp.Or(c.BackoffMax, DefaultBackoffMax)
	c.PublishTimeout = cmp.Or(c.PublishTimeout, DefaultPublishTimeout)
	c.ShutdownTimeout = cmp.Or(c.ShutdownTimeout, DefaultShutdownTimeout)
	c.BatchTimeout = cmp.Or(c.BatchTimeout, DefaultBatchTimeout)
	c.SinkName = cmp.Or(c.SinkName, "sink")
	c.MaxProbeInterval = cmp.Or(c.MaxProbeInterval, DefaultMaxProbeInterval)
	c.FailureSummaryInterval = cmp.Or(c.FailureSummaryInterval, DefaultFailureSummaryInterval)
	c.PauseInterval = cmp.Or(c.PauseInterval, DefaultPauseInterval)
	return c
}

// Run relays until ctx ends, then lets in-flight batches finish (within ShutdownTimeout) and
// returns nil. It returns early only if the source's background work fails.
func (r *Relay) Run(ctx context.Context) error {
	// In-flight work outlives ctx by up to ShutdownTimeout.
	work, cancelWork := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelWork(errShutdown)
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(r.cfg.ShutdownTimeout, func() { cancelWork(errShutdown) })
		context.AfterFunc(work, func() { t.Stop() })
	})
	defer stop()

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var (
		wg     sync.WaitGroup
		srcErr error
	)
	if runner, ok := r.cfg.Source.(Runner); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := runner.Run(runCtx); err != nil && runCtx.Err() == nil {
				srcErr = err
				r.logger.Error("relay source failed", slog.Any("error", err))
				cancelRun()
			}
		}()
	}
	if r.cfg.Pauses != nil {
		// Read before the first claim, so that a relay started during a pause honours it.
		r.readPauses(runCtx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.watchPauses(runCtx)
		}()
	}
	if rec, ok := r.cfg.Source.(Recorder); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.recordRemembered(runCtx, rec)
		}()
	}
	for i := range r.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(runCtx, work, i)
		}()
	}
	wg.Wait()
	return srcErr
}

func (r *Relay) worker(ctx, work context.Context, id int) {
	var failures, bookkeeping int
	for ctx.Err() == nil {
		b, err := r.cfg.Source.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			d := pause(failures, 5*time.Second)
			r.logger.Warn("claiming messages failed", slog.Int("worker", id), slog.Any("error", err), slog.Duration("retry_in", d))
			_ = Sleep(ctx, d)
			continue
		}
		res := r.process(work, b)
		if res.finishErr != nil {
			// The outcome was decided but not written: the messages are claimable again,
			// unchanged. Back off as after a failed publish; when they come back, their
			// remembered outcome is applied instead of publishing them again.
			bookkeeping++
			d := pause(bookkeeping, min(max(r.cfg.BackoffMax, time.Second), DefaultMaxProbeInterval))
			r.logger.Warn("recording the outcome of a batch failed; its messages will not be published again, retrying",
				slog.Int("worker", id), slog.Int("messages", res.messages), slog.Any("error", res.finishErr),
				slog.Int("failures", bookkeeping), slog.Duration("retry_in", d))
			_ = Sleep(ctx, d)
			continue
		}
		if bookkeeping > 0 {
			r.logger.Info("recording batch outcomes works again", slog.Int("worker", id), slog.Int("failures", bookkeeping))
			bookkeeping = 0
		}
		switch {
		case res.held:
			// Everything waits for an unavailable sink: nothing to do before its probe.
			_ = Sleep(ctx, max(time.Until(res.until), 10*time.Millisecond))
		case res.healthy:
			failures = 0
		default:
			// The sink failed every message of the batch: pause this worker so a failure
			// of every message costs a few attempts, not a storm of them.
			failures++
			_ = Sleep(ctx, pause(failures, 5*time.Second))
		}
	}
}

// recordRemembered records the remembered published outcomes through rec, every 100ms while
// there are any, until ctx ends: the first attempt after the database is back usually comes
// before another relay's claim of the same messages.
func (r *Relay) recordRemembered(ctx context.Context, rec Recorder) {
	const every, most = 100 * time.Millisecond, 1000
	failures := 0
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.unrecorded.kick:
		case <-t.C:
		}
		if !r.unrecorded.hasPublished() {
			continue
		}
		refs := r.unrecorded.publishedRefs(most)
		done, err := rec.RecordPublished(ctx, refs)
		if errors.Is(err, errors.ErrUnsupported) {
			return // the messages' outcome is applied when they are claimed again
		}
		if err != nil {
			if failures++; failures == 1 && ctx.Err() == nil {
				r.logger.Debug("recording remembered outcomes failed; retrying", slog.Int("messages", len(refs)), slog.Any("error", err))
			}
			continue
		}
		failures = 0
		r.unrecorded.forgetPublished(done)
		if len(done) > 0 {
			r.logger.Info("recorded published messages whose batch could not record them", slog.Int("messages", len(done)),
				slog.Int("held_by_claims", len(refs)-len(done)))
		}
	}
}

// pause is a worker's own backoff after consecutive failures: 100ms doubling up to ceiling,
// jittered between half and all of it.
func pause(failures int, ceiling time.Duration) time.Duration {
	d := min(ceiling, 100*time.Millisecond<<min(failures-1, 20))
	return d/2 + rand.N(d/2+1)
}

// Sleep waits for d, or until ctx ends, whichever comes first, and returns ctx's error when
// it ended (nil otherwise; at once for d <= 0). It is the wait of the relay's workers
// between failures, and one for the retry loops of Source implementations.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// batchResult is what became of one batch.
type batchResult struct {
	messages  int
	healthy   bool      // something was delivered, or nothing failed
	held      bool      // nothing was attempted: every message waits for a paused sink
	until     time.Time // when held: the sink's next probe
	finishErr error     // the outcome could not be recorded
}

// process publishes one batch and finishes it.
func (r *Relay) process(work context.Context, b Batch) batchResult {
	recs := b.Records()
	// Messages whose outcome an earlier Finish failed to record get that outcome, unpublished.
	o, rest := r.unrecorded.replay(recs)
	cp, _ := b.(Checkpointer)
	d := r.dispatch(work, rest, cp)
	o = merge(o, d.outcome)
	// Finish even after shutdown's hard deadline: releasing and deleting must happen.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(work), 30*time.Second)
	defer cancel()
	// Remembered before Finish, not after it fails: a failed Finish releases the messages at
	// once, and another worker may claim them before this one could remember them.
	r.unrecorded.remember(recs, without(o, d.checkpointed))
	err := b.Finish(fctx, o)
	if err != nil {
		r.unrecorded.failed(o)
	} else {
		r.unrecorded.forget(o)
	}
	r.hooks.batchFinished(recs, o, err)
	return batchResult{messages: len(recs), healthy: d.delivered || !d.failed, held: d.held,
		until: d.until, finishErr: err}
}

// dispatched is the outcome of publishing a batch.
type dispatched struct {
	outcome outbox.Outcome
	// checkpointed are the messages of outcome.Published that a checkpoint recorded.
	checkpointed map[int64]bool
	delivered    bool      // a message was acknowledged
	failed       bool      // a message failed for a reason of its own
	held         bool      // nothing was attempted and everything waits for a paused sink
	until        time.Time // when held: the earliest probe
}

// heldMessage waits for its unavailable sink, or for an operator pause to end; it is not
// attempted.
type heldMessage struct {
	rec      *outbox.Record
	dest     string
	err      string
	until    time.Time
	operator *dialect.Pause // the operator pause holding it; nil: an outage
}

// dispatch publishes recs keeping per-key order: each Publish call (a wave) carries at most
// one message per key, and a key's next message goes out only after the previous one was
// acknowledged. A failed message stops its key for this batch; later messages of the key are
// released untouched, to follow it after its backoff. Messages without a key are independent.
// Messages for a sink that is unavailable (sink.ErrUnavailable), or paused after such
// failures, are not attempted: they wait for the sink's next probe with their attempts
// unchanged, and stop their key too.
//
// When the batch is a Checkpointer, the messages a wave got acknowledged are checkpointed
// before the next wave goes out (see checkpoints); a failed checkpoint ends the batch.
func (r *Relay) dispatch(work context.Context, recs []outbox.Record, cp Checkpointer) dispatched {
	var res dispatched
	cps := checkpoints{cp: cp, work: work}
	o := &res.outcome
	if len(recs) == 0 {
		return res
	}
	// Lanes in order of their first message; a handful of allocations per batch, not a few
	// per key: the lanes' record lists are slices of one array.
	type lane struct{ recs []*outbox.Record }
	var (
		laneOf = make([]int32, len(recs))
		counts = make([]int32, 0, len(recs))
		byKey  = make(map[string]int32, len(recs))
	)
	for i := range recs {
		k := recs[i].Key
		j, ok := byKey[k]
		if !ok || k == "" {
			j = int32(len(counts))
			counts = append(counts, 0)
			if k != "" {
				byKey[k] = j
			}
		}
		laneOf[i] = j
		counts[j]++
	}
	all := make([]lane, len(counts))
	ptrs := make([]*outbox.Record, len(recs))
	off := int32(0)
	for j, n := range counts {
		all[j].recs = ptrs[off : off : off+n]
		off += n
	}
	for i := range recs {
		l := &all[laneOf[i]]
		l.recs = append(l.recs, &recs[i])
	}
	lanes := make([]*lane, len(all))
	for j := range all {
		lanes[j] = &all[j]
	}
	o.Published = make([]int64, 0, len(recs))
	var (
		held      []heldMessage
		dups      int
		wave      = make([]*outbox.Record, 0, len(lanes))
		waveLanes = make([]*lane, 0, len(lanes))
		waveDests = make([]string, 0, len(lanes))
		admitted  = make(map[string]admission, 1)
		deadline  = time.Now().Add(r.cfg.BatchTimeout)
	)
	for len(lanes) > 0 {
		if work.Err() != nil || time.Now().After(deadline) {
			break // shutdown deadline or batch budget passed: release the rest
		}
		now := time.Now()
		clear(admitted)
		wave, waveLanes, waveDests = wave[:0], waveLanes[:0], waveDests[:0]
		next := lanes[:0]
		for _, l := range lanes {
			rec := l.recs[0]
			dest := r.destination(rec.Topic)
			if op := r.operator.paused(rec.Topic, dest); op != nil {
				held = append(held, heldMessage{rec: rec, dest: dest, operator: op})
				continue // the key waits for the resume; no probe
			}
			adm, seen := admitted[dest]
			if !seen {
				adm = r.pauses.admit(dest, now)
				admitted[dest] = adm
			}
			if !adm.ok {
				held = append(held, heldMessage{rec: rec, dest: dest, err: adm.err, until: adm.until})
				continue // the key waits for the sink
			}
			wave = append(wave, rec)
			waveLanes = append(waveLanes, l)
			waveDests = append(waveDests, dest)
		}
		if len(wave) == 0 {
			break
		}
		pctx, cancel := context.WithTimeout(work, r.cfg.PublishTimeout)
		start := time.Now()
		results := r.cfg.Sink.Publish(pctx, wave)
		took := time.Since(start)
		timedOut := pctx.Err() == context.DeadlineExceeded && work.Err() == nil
		cancel()
		if len(results) != len(wave) {
			err := fmt.Errorf("sink returned %d results for %d messages", len(results), len(wave))
			r.logger.Error("sink broke its contract", slog.Any("error", err))
			results = sink.FailAll(len(wave), err)
		}
		if len(r.hooks.onPublished) > 0 {
			r.hooks.published(&Published{Records: wave, Destinations: waveDests, Results: results, Start: start, Duration: took})
		}
		// Per destination: did every message fail because the sink is unavailable?
		type tally struct {
			down, up int
			err      error
		}
		tallies := make(map[string]*tally, len(admitted))
		now = time.Now()
		for i, rec := range wave {
			l, dest, err := waveLanes[i], waveDests[i], results[i]
			t := tallies[dest]
			if t == nil {
				t = &tally{}
				tallies[dest] = t
			}
			if err == nil || sink.IsDuplicate(err) {
				t.up++
				res.delivered = true
				o.Published = append(o.Published, rec.Seq)
				if err != nil {
					o.Duplicates = append(o.Duplicates, rec.Seq)
					dups++
					if dups <= maxDuplicateLogs {
						r.logger.Warn("broker acknowledged the message as a duplicate of one it already held (a republish, or a reused message id)",
							slog.String("sink", dest), slog.String("topic", logValue(rec.Topic)), slog.String("key", logValue(rec.Key)),
							slog.String("message_id", rec.ID.String()), slog.Int64("seq", rec.Seq), slog.Any("detail", err))
					}
				}
				r.failures.succeeded(dest, rec.Topic, now)
				if l.recs = l.recs[1:]; len(l.recs) > 0 {
					next = append(next, l)
				}
				continue
			}
			if errors.Is(context.Cause(work), errShutdown) {
				continue // not the message's fault: release it unchanged
			}
			if sink.IsUnavailable(err) || (timedOut && errors.Is(err, context.DeadlineExceeded)) {
				t.down++
				t.err = err
				held = append(held, heldMessage{rec: rec, dest: dest, err: err.Error()})
				continue
			}
			t.up++ // the sink answered: the failure is the message's own
			res.failed = true
			r.fail(o, dest, rec, err)
		}
		for dest, t := range tallies {
			adm := admitted[dest]
			switch {
			case t.up > 0:
				r.pauses.available(dest, now)
			case t.down > 0:
				r.pauses.failed(dest, adm.probe, t.err, now)
			case adm.probe:
				r.pauses.release(dest)
			}
		}
		lanes = next
		if len(lanes) > 0 && !cps.record(o) {
			break // the batch no longer holds its messages: release the rest
		}
	}
	if dups > maxDuplicateLogs {
		r.logger.Warn("broker acknowledged more messages of the batch as duplicates",
			slog.Int("duplicates", dups), slog.Int("not_logged", dups-maxDuplicateLogs))
	}
	res.checkpointed = cps.ok
	r.hold(&res, held)
	return res
}

// checkpoints records a batch's acknowledged messages wave by wave (Checkpointer), between
// one wave and the next: a relay killed in the middle of a batch leaves at most the wave in
// flight (published, its acknowledgements not recorded) to be published again.
type checkpoints struct {
	cp   Checkpointer
	work context.Context
	ok   map[int64]bool // published messages a checkpoint recorded
	err  error          // the failed checkpoint's: the batch holds nothing any more
}

// record checkpoints the messages of o.Published not checkpointed yet and reports whether
// the batch may go on.
func (c *checkpoints) record(o *outbox.Outcome) bool {
	if c.cp == nil {
		return true
	}
	if c.err != nil {
		return false
	}
	var part outbox.Outcome
	for _, seq := range o.Published {
		if !c.ok[seq] {
			part.Published = append(part.Published, seq)
		}
	}
	if len(part.Published) == 0 {
		return true
	}
	for _, seq := range o.Duplicates {
		if !c.ok[seq] {
			part.Duplicates = append(part.Duplicates, seq)
		}
	}
	// As Finish: recorded even past shutdown's hard deadline.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.work), 30*time.Second)
	defer cancel()
	if c.err = c.cp.Checkpoint(ctx, part); c.err != nil {
		return false
	}
	if c.ok == nil {
		c.ok = make(map[int64]bool, len(o.Published))
	}
	for _, seq := range part.Published {
		c.ok[seq] = true
	}
	return true
}

// without returns o less the published messages of recorded.
func without(o outbox.Outcome, recorded map[int64]bool) outbox.Outcome {
	if len(recorded) == 0 {
		return o
	}
	kept := make([]int64, 0, len(o.Published))
	for _, seq := range o.Published {
		if !recorded[seq] {
			kept = append(kept, seq)
		}
	}
	o.Published = kept
	return o
}

// maxDuplicateLogs bounds the duplicate reports logged one by one per batch.
const maxDuplicateLogs = 10

// hold decides what becomes of the messages that wait for an unavailable sink. When nothing
// else of the batch was attempted and the relay has one destination, they are released
// unchanged and the worker waits for the probe (no write per message, however long the
// outage and the backlog). Otherwise each is rescheduled for its sink's next probe without
// spending an attempt, so that the other destinations' messages flow meanwhile.
//
// Messages an operator pause holds are released unchanged when the source excludes topics
// (TopicExcluder: it is told to leave their topic alone from now on), and otherwise
// rescheduled for a pause interval without spending an attempt; they never pause or probe a
// destination, nor make the worker wait.
func (r *Relay) hold(res *dispatched, held []heldMessage) {
	held = r.holdForOperator(&res.outcome, held)
	if len(held) == 0 {
		return
	}
	now := time.Now()
	oldest := make(map[string]time.Time)
	count := make(map[string]int)
	for i := range held {
		h := &held[i]
		if h.until.IsZero() {
			h.until = r.pauses.nextProbe(h.dest, now, r.cfg.MaxProbeInterval)
		}
		count[h.dest]++
		if c := h.rec.CreatedAt; !c.IsZero() && (oldest[h.dest].IsZero() || c.Before(oldest[h.dest])) {
			oldest[h.dest] = c
		}
	}
	for dest, n := range count {
		r.pauses.hold(dest, n, oldest[dest], now)
	}
	o := &res.outcome
	if _, routed := r.cfg.Sink.(sink.Destinations); !routed && !res.delivered && !res.failed {
		res.held = true
		res.until = held[0].until
		for _, h := range held[1:] {
			if h.until.Before(res.until) {
				res.until = h.until
			}
		}
		return
	}
	for _, h := range held {
		o.Retry = append(o.Retry, outbox.Retry{Seq: h.rec.Seq, Delay: max(0, h.until.Sub(now)),
			Error: storable("sink unavailable: " + h.err), NotAttempted: true})
	}
}

// holdForOperator decides what becomes of the messages of held that an operator pause holds,
// and returns the others.
func (r *Relay) holdForOperator(o *outbox.Outcome, held []heldMessage) []heldMessage {
	_, excluding := r.cfg.Source.(TopicExcluder)
	rest := held[:0]
	for _, h := range held {
		p := h.operator
		switch {
		case p == nil:
			rest = append(rest, h)
		case excluding:
			if p.Kind == dialect.PauseSink {
				r.learn(h.rec.Topic, h.dest)
			}
		default:
			o.Retry = append(o.Retry, outbox.Retry{Seq: h.rec.Seq, Delay: r.cfg.PauseInterval,
				Error: storable("paused by an operator: " + string(p.Kind) + " " + p.Name), NotAttempted: true})
		}
	}
	return rest
}

// destination names the sink topic goes to: the route's, or the relay's one sink.
func (r *Relay) destination(topic string) string {
	if d, ok := r.cfg.Sink.(sink.Destinations); ok {
		if name := d.Destination(topic); name != "" {
			return name
		}
	}
	return r.cfg.SinkName
}

// fail records a failed attempt: dead letter when permanent or out of attempts, else retry.
func (r *Relay) fail(o *outbox.Outcome, dest string, rec *outbox.Record, err error) {
	attempt := rec.Attempts + 1
	switch {
	case sink.IsPermanent(err):
		r.logger.Warn("message rejected permanently; moved to dead letters",
			slog.String("sink", dest), slog.String("topic", logValue(rec.Topic)), slog.Int64("seq", rec.Seq),
			slog.String("message_id", rec.ID.String()), slog.Any("error", err))
		o.Dead = append(o.Dead, outbox.Dead{Seq: rec.Seq, Error: storable(err.Error())})
	case attempt >= r.cfg.MaxAttempts:
		r.logger.Warn("message failed its last attempt; moved to dead letters",
			slog.String("sink", dest), slog.String("topic", logValue(rec.Topic)), slog.Int64("seq", rec.Seq),
			slog.String("message_id", rec.ID.String()), slog.Int("attempts", attempt), slog.Any("error", err))
		o.Dead = append(o.Dead, outbox.Dead{Seq: rec.Seq,
			Error: storable(fmt.Sprintf("after %d attempts: %v", attempt, err))})
	default:
		r.failures.failed(dest, rec, err, time.Now())
		delay := r.backoff(rec.Attempts)
		// A broker that says when to come back (HTTP Retry-After) is honoured, within BackoffMax.
		var ra sink.RetryAfter
		if errors.As(err, &ra) {
			delay = min(max(delay, ra.RetryAfter()), r.cfg.BackoffMax)
		}
		o.Retry = append(o.Retry, outbox.Retry{Seq: rec.Seq, Delay: delay, Error: storable(err.Error())})
	}
}

// backoff is "full jitter": uniform in [0, min(max, base·2^attempts)].
func (r *Relay) backoff(attempts int) time.Duration {
	ceil := r.cfg.BackoffMax
	if attempts < 63 && r.cfg.BackoffBase <= ceil>>attempts {
		ceil = r.cfg.BackoffBase << attempts
	}
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil + 1)
}

// maxErrorText bounds the error text of an outcome: about 2000 bytes.
const maxErrorText = 2000

// storable makes an error storable: valid UTF-8 without NUL bytes (PostgreSQL refuses both in
// text columns, which would fail the whole batch), at most about maxErrorText bytes, cut on a
// character boundary.
func storable(s string) string { return outbox.StorableText(s, maxErrorText) }
