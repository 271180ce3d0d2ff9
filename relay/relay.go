package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

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
	Finish(ctx context.Context, o dialect.Outcome) error
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
	// Observer, when set, is told about every finished batch (metrics, tests).
	Observer Observer
}

// Observer receives the outcome of each batch after it was finished.
type Observer interface {
	BatchFinished(recs []outbox.Record, o dialect.Outcome, err error)
}

// Relay moves messages from a Source to a Sink: per-key order, retries with persisted
// backoff, dead letters. Create with New, start with Run.
type Relay struct {
	cfg    Config
	logger *slog.Logger
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
	cfg.Workers = cmp.Or(cfg.Workers, 1)
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, DefaultMaxAttempts)
	cfg.BackoffBase = cmp.Or(cfg.BackoffBase, DefaultBackoffBase)
	cfg.BackoffMax = cmp.Or(cfg.BackoffMax, DefaultBackoffMax)
	cfg.PublishTimeout = cmp.Or(cfg.PublishTimeout, DefaultPublishTimeout)
	cfg.ShutdownTimeout = cmp.Or(cfg.ShutdownTimeout, DefaultShutdownTimeout)
	cfg.BatchTimeout = cmp.Or(cfg.BatchTimeout, DefaultBatchTimeout)
	switch {
	case cfg.Workers < 0:
		return nil, &outbox.ConfigError{Field: "workers", Reason: "must be positive"}
	case cfg.MaxAttempts < 1:
		return nil, &outbox.ConfigError{Field: "max_attempts", Reason: "must be at least 1"}
	case cfg.BackoffBase < 0 || cfg.BackoffMax < cfg.BackoffBase:
		return nil, &outbox.ConfigError{Field: "backoff_max", Reason: "must be at least backoff_base, both positive"}
	case cfg.PublishTimeout < 0:
		return nil, &outbox.ConfigError{Field: "publish_timeout", Reason: "must be positive"}
	case cfg.ShutdownTimeout < 0:
		return nil, &outbox.ConfigError{Field: "shutdown_timeout", Reason: "must be positive"}
	case cfg.BatchTimeout < 0:
		return nil, &outbox.ConfigError{Field: "batch_timeout", Reason: "must be positive"}
	}
	return &Relay{cfg: cfg, logger: cmp.Or(cfg.Logger, slog.Default())}, nil
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
	var failures int
	for ctx.Err() == nil {
		b, err := r.cfg.Source.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			d := pause(failures)
			r.logger.Warn("claiming messages failed", slog.Int("worker", id), slog.Any("error", err), slog.Duration("retry_in", d))
			sleep(ctx, d)
			continue
		}
		if r.process(work, b) {
			failures = 0
			continue
		}
		// The sink failed every message of the batch: it is probably down. Pause this
		// worker so a broker outage costs a few attempts per message, not a storm of them.
		failures++
		sleep(ctx, pause(failures))
	}
}

// pause is the worker's own backoff after consecutive failures: 100ms doubling to 5s.
func pause(failures int) time.Duration {
	return min(5*time.Second, 100*time.Millisecond<<min(failures-1, 6))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// process publishes one batch and finishes it. It reports whether anything was delivered or
// the batch was empty of failures.
func (r *Relay) process(work context.Context, b Batch) bool {
	recs := b.Records()
	o, healthy := r.dispatch(work, recs)
	// Finish even after shutdown's hard deadline: releasing and deleting must happen.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(work), 30*time.Second)
	defer cancel()
	err := b.Finish(fctx, o)
	if err != nil {
		// The claim's transaction is gone: its rows are released and will be published
		// again (duplicates, never loss).
		r.logger.Error("finishing batch failed; messages will be published again",
			slog.Int("messages", len(recs)), slog.Any("error", err))
	}
	if r.cfg.Observer != nil {
		r.cfg.Observer.BatchFinished(recs, o, err)
	}
	return healthy
}

// dispatch publishes recs keeping per-key order: each Publish call (a wave) carries at most
// one message per key, and a key's next message goes out only after the previous one was
// acknowledged. A failed message stops its key for this batch; later messages of the key are
// released untouched, to follow it after its backoff. Messages without a key are independent.
func (r *Relay) dispatch(work context.Context, recs []outbox.Record) (dialect.Outcome, bool) {
	var o dialect.Outcome
	if len(recs) == 0 {
		return o, true
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
	anyDelivered, anyFailed := false, false
	wave := make([]*outbox.Record, 0, len(lanes))
	waveLanes := make([]*lane, 0, len(lanes))
	deadline := time.Now().Add(r.cfg.BatchTimeout)
	for len(lanes) > 0 {
		wave, waveLanes = wave[:0], waveLanes[:0]
		for _, l := range lanes {
			wave = append(wave, l.recs[0])
			waveLanes = append(waveLanes, l)
		}
		if work.Err() != nil || time.Now().After(deadline) {
			break // shutdown deadline or batch budget passed: release the rest
		}
		pctx, cancel := context.WithTimeout(work, r.cfg.PublishTimeout)
		results := r.cfg.Sink.Publish(pctx, wave)
		cancel()
		if len(results) != len(wave) {
			err := fmt.Errorf("sink returned %d results for %d messages", len(results), len(wave))
			r.logger.Error("sink broke its contract", slog.Any("error", err))
			results = sink.FailAll(len(wave), err)
		}
		next := lanes[:0]
		for i, rec := range wave {
			l := waveLanes[i]
			err := results[i]
			if err == nil {
				anyDelivered = true
				o.Published = append(o.Published, rec.Seq)
				if l.recs = l.recs[1:]; len(l.recs) > 0 {
					next = append(next, l)
				}
				continue
			}
			if context.Cause(work) == errShutdown {
				continue // not the message's fault: release it unchanged
			}
			anyFailed = true
			r.fail(&o, rec, err)
		}
		lanes = next
	}
	return o, anyDelivered || !anyFailed
}

// fail records a failed attempt: dead letter when permanent or out of attempts, else retry.
func (r *Relay) fail(o *dialect.Outcome, rec *outbox.Record, err error) {
	attempt := rec.Attempts + 1
	switch {
	case sink.IsPermanent(err):
		r.logger.Warn("message rejected permanently; moved to dead letters",
			slog.String("topic", rec.Topic), slog.Int64("seq", rec.Seq), slog.Any("error", err))
		o.Dead = append(o.Dead, dialect.Dead{Seq: rec.Seq, Error: truncate(err.Error())})
	case attempt >= r.cfg.MaxAttempts:
		r.logger.Warn("message failed its last attempt; moved to dead letters",
			slog.String("topic", rec.Topic), slog.Int64("seq", rec.Seq), slog.Int("attempts", attempt), slog.Any("error", err))
		o.Dead = append(o.Dead, dialect.Dead{Seq: rec.Seq,
			Error: truncate(fmt.Sprintf("after %d attempts: %v", attempt, err))})
	default:
		delay := r.backoff(rec.Attempts)
		// A broker that says when to come back (HTTP Retry-After) is honoured, within BackoffMax.
		var ra interface{ RetryAfter() time.Duration }
		if errors.As(err, &ra) {
			delay = min(max(delay, ra.RetryAfter()), r.cfg.BackoffMax)
		}
		o.Retry = append(o.Retry, dialect.Retry{Seq: rec.Seq, Delay: delay, Error: truncate(err.Error())})
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

// truncate makes an error storable: valid UTF-8 without NUL bytes (PostgreSQL refuses both in
// text columns, which would fail the whole batch), at most about 2000 bytes, cut on a
// character boundary.
func truncate(s string) string {
	const limit = 2000
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
