package chaos

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/relay"
)

// Run runs one checker: it starts a broker, a fresh schema (PostgreSQL) or database
// (MariaDB) with an outbox table and cfg.Relays `outbox relay` processes sharing it,
// subscribes a consumer, then for cfg.Duration commits (and rolls back) transactions while
// injecting faults at random moments; it waits (at most cfg.DrainTimeout) for every
// committed message to be delivered, stops everything and checks what the consumer got
// against what was committed.
//
// Every phase has a deadline, so Run returns by itself. The error is about the run itself
// (a service missing, a build failure); guarantee violations are in the Report (see
// Report.OK). A partial report comes with an error when the run stopped midway.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return Report{}, err
	}
	r := &run{cfg: &cfg, log: cfg.Logger, id: randomID()}
	r.db = newDatabase(r.cfg, r.id)
	rep := Report{
		Sink: cfg.Sink, Database: cfg.Database, Source: cfg.Source, Relays: cfg.Relays, Keys: cfg.Keys, Producers: cfg.Producers, TxMessages: cfg.TxMessages,
		TargetRate: cfg.Rate, Seed: cfg.Seed, Faults: map[string]int{},
	}
	err := r.do(ctx, &rep)
	if err != nil {
		rep.Error = err.Error()
	}
	r.cleanup(&rep)
	return rep, err
}

// relayMaxAttempts is the relays' relay.max_attempts unless Config.RelayEnv sets another.
const relayMaxAttempts = 100

// run holds one Run's resources, released by cleanup in reverse order.
type run struct {
	cfg *Config
	log *slog.Logger
	id  string

	workDir     string
	binary      string
	ownWorkDir  bool
	db          database
	dbProxy     *faultproxy.Proxy
	brk         broker
	relays      *relayProcs
	consumers   *relayProcs  // Config.Consumers
	inbox       *inbox.Inbox // the consumers', on the checker's connection
	stopConsume context.CancelFunc
	consumerWG  sync.WaitGroup
}

func randomID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (r *run) do(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	setupCtx, cancel := context.WithTimeout(ctx, cfg.SetupTimeout)
	defer cancel()
	if err := r.setup(setupCtx, rep); err != nil {
		return fmt.Errorf("setting up: %w", err)
	}

	// The consumer subscribes before anything is produced.
	led := newLedger(cfg.Keys, time.Now())
	cctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r.stopConsume = stop
	r.consumerWG.Add(1)
	go func() {
		defer r.consumerWG.Done()
		r.brk.consume(cctx, led.deliver)
	}()

	// Relays, then wait until they are ready: all registered, or one streaming.
	t0 := time.Now()
	common := []string{
		"OUTBOX_TABLE=" + r.db.table(),
		"OUTBOX_POLL_INTERVAL=50ms",
		"OUTBOX_POLL_BATCH_SIZE=500",
		"OUTBOX_RELAY_MAX_ATTEMPTS=" + strconv.Itoa(relayMaxAttempts),
		"OUTBOX_RELAY_BACKOFF_BASE=50ms",
		"OUTBOX_RELAY_BACKOFF_MAX=1s",
		"OUTBOX_RELAY_PUBLISH_TIMEOUT=5s",
		"OUTBOX_RELAY_BATCH_TIMEOUT=15s",
		"OUTBOX_RELAY_SHUTDOWN_TIMEOUT=5s",
		"OUTBOX_LOG_LEVEL=" + cfg.RelayLogLevel,
	}
	common = append(common, r.brk.relayEnv()...)
	// The database's settings (its URL, the source's) come first, so that Config.RelayEnv,
	// last, can override any of them.
	dbEnv, err := r.db.relayEnv(r.dbProxy.Addr())
	if err != nil {
		return err
	}
	if len(cfg.RelayEnv) > 0 {
		rep.Notes = append(rep.Notes, "relay settings added: "+strings.Join(cfg.RelayEnv, " "))
	}
	r.relays = &relayProcs{bin: r.binary, dir: r.workDir, logger: r.log, start: t0,
		env: func(i int) []string {
			env := slices.Concat(dbEnv(i), common, cfg.RelayEnv)
			if cfg.StableRelayIDs {
				env = append(env, "OUTBOX_RELAY_ID=chaos-relay-"+strconv.Itoa(i))
			}
			return env
		}}
	if err := startRelays(r.relays, cfg.Relays); err != nil {
		return err
	}
	if err := r.waitRelays(setupCtx); err != nil {
		return err
	}
	r.log.Info("relays up", slog.Int("relays", cfg.Relays), slog.Duration("after", time.Since(t0)))
	if cfg.Consumers > 0 {
		if err := r.startConsumers(setupCtx, rep, t0); err != nil {
			return err
		}
		r.log.Info("consumers started", slog.Int("consumers", rep.Consumers))
	}

	// Load and faults.
	start := time.Now()
	led.mu.Lock()
	led.start = start
	led.mu.Unlock()
	prod := &producers{cfg: cfg, db: r.db, ledger: led}
	hostile := &hostiles{cfg: cfg, db: r.db, ledger: led}
	if cfg.Hostile > 0 {
		hostile.classes = r.db.hostileClasses()
	}
	f := &faulter{cfg: cfg, brk: r.brk, relays: r.relays, consumers: r.consumers, dbProxy: r.dbProxy, db: r.db, start: start, log: r.log}
	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	if cfg.hook != nil {
		if err := cfg.hook(loadCtx, r, led); err != nil {
			return fmt.Errorf("test hook: %w", err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); prod.run(loadCtx) }()
	go func() { defer wg.Done(); hostile.run(loadCtx) }()
	go func() { defer wg.Done(); f.run(loadCtx) }()
	progress := time.NewTicker(10 * time.Second)
	defer progress.Stop()
	loadDone := make(chan struct{})
	go func() { wg.Wait(); close(loadDone) }()
wait:
	for {
		select {
		case <-loadDone:
			break wait
		case <-progress.C:
			led.mu.Lock()
			n, d := len(led.entries), led.deliveries
			led.mu.Unlock()
			r.log.Info("progress", slog.Duration("elapsed", time.Since(start).Round(time.Second)),
				slog.Int("produced", n), slog.Int64("deliveries", d), slog.Int("faults", f.count()))
		}
	}
	loadEnd := time.Now()
	rep.DurationSec = loadEnd.Sub(start).Seconds()
	faults, healed := f.result()
	rep.FaultTimeline = faults
	for _, ft := range faults {
		rep.Faults[ft.Kind]++
	}
	rep.ProducerErrors = prod.errs.Load()
	if e := prod.lastErr.Load(); e != nil {
		rep.LastProducerError = (*e).Error()
	}
	rep.HostileErrors = hostile.errs.Load()
	if e := hostile.lastErr.Load(); e != nil {
		rep.LastHostileError = (*e).Error()
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// Which transactions committed is what the business table says (a COMMIT that failed
	// with the connection may have committed).
	vctx, vcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer vcancel()
	if err := r.resolveCommitted(vctx, led); err != nil {
		return fmt.Errorf("reading the business table: %w", err)
	}

	// Drain: wait for every committed message, then a moment for late duplicates and phantoms.
	drainCtx, dcancel := context.WithTimeout(ctx, cfg.DrainTimeout)
	defer dcancel()
	drainStart := time.Now()
	rep.Drained = waitDrained(drainCtx, led)
	if rep.Drained && cfg.Hostile > 0 {
		// The hostile rows have no delivery to wait for: wait for the table to empty.
		rep.Drained = r.waitEmpty(drainCtx)
	}
	r.log.Info("drain", slog.Bool("drained", rep.Drained), slog.Duration("waited", time.Since(drainStart)))
	if r.consumers != nil {
		// Then every committed message's effect.
		rep.EffectsDrained = r.waitEffects(drainCtx, led)
		rep.EffectsDrainSec = time.Since(drainStart).Seconds()
		r.log.Info("effects drain", slog.Bool("drained", rep.EffectsDrained), slog.Duration("waited", time.Since(drainStart)))
	}
	_ = relay.Sleep(ctx, time.Second)

	r.relays.stop(15 * time.Second)
	r.consumers.stop(15 * time.Second)
	r.stopConsume()
	r.consumerWG.Wait()

	starts, exits := r.relays.stats()
	rep.RelayStarts, rep.RelayExits = starts, exits
	rep.ConsumerStarts, rep.ConsumerExits = r.consumers.stats()
	// The checks get a deadline of their own: the drains above may have used up vctx's.
	cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer ccancel()
	if cfg.beforeVerify != nil {
		if err := cfg.beforeVerify(cctx, r); err != nil {
			return fmt.Errorf("test hook: %w", err)
		}
	}
	if err := r.verify(cctx, rep, led, hostile.classes, start, loadEnd, healed); err != nil {
		return err
	}
	if r.consumers != nil {
		r.verifyEffects(cctx, rep, led)
	}
	return nil
}

// waitEmpty waits until the outbox has no unpublished row; false when ctx ended first.
func (r *run) waitEmpty(ctx context.Context) bool {
	for {
		st, err := r.db.stats(ctx)
		if err == nil && st.Pending == 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// maxAttempts is the relays' relay.max_attempts: the run's, or the last Config.RelayEnv
// setting of it.
func (r *run) maxAttempts() int64 {
	n := int64(relayMaxAttempts)
	for _, kv := range r.cfg.RelayEnv {
		if v, ok := strings.CutPrefix(kv, "OUTBOX_RELAY_MAX_ATTEMPTS="); ok {
			if m, err := strconv.ParseInt(v, 10, 64); err == nil && m > 0 {
				n = m
			}
		}
	}
	return n
}

// setup builds the relay binary, sets up the database and starts the broker.
func (r *run) setup(ctx context.Context, rep *Report) error {
	cfg := r.cfg
	r.workDir = cfg.WorkDir
	if r.workDir == "" {
		d, err := os.MkdirTemp("", "outbox-chaos-")
		if err != nil {
			return err
		}
		r.workDir, r.ownWorkDir = d, true
	} else if err := os.MkdirAll(r.workDir, 0o755); err != nil {
		return err
	}
	rep.WorkDir = r.workDir
	r.binary = cfg.OutboxBinary
	if r.binary == "" {
		r.log.Info("building the outbox command")
		bin, err := buildOutbox(ctx, r.workDir)
		if err != nil {
			return err
		}
		r.binary = bin
	}

	if err := r.db.setup(ctx); err != nil {
		return err
	}
	rep.OutboxTable = r.db.table()
	dbAddr, err := r.db.addr()
	if err != nil {
		return err
	}
	if r.dbProxy, err = startProxy(dbAddr); err != nil {
		return err
	}

	switch cfg.Sink {
	case SinkNATS:
		r.brk, err = startNATS(filepath.Join(r.workDir, "nats"))
	case SinkKafka:
		r.brk, err = startKafka(filepath.Join(r.workDir, "kafka"))
	case SinkRabbitMQ:
		r.brk, err = startAMQP(cfg.AMQPURL, "outbox-chaos-"+r.id)
	case SinkRedis:
		r.brk, err = startRedis(cfg.RedisAddr, "outbox-chaos-"+r.id)
	case SinkMQTT:
		r.brk, err = startMQTT(cfg.MQTTAddr, filepath.Join(r.workDir, "mosquitto"), "outbox-chaos-"+r.id)
	case SinkWebhook:
		r.brk, err = startWebhook(cfg.Consumers > 0)
	}
	if err != nil {
		return fmt.Errorf("starting the %s broker: %w", cfg.Sink, err)
	}
	rep.Notes = append(rep.Notes, r.brk.notes()...)
	ids := "a new relay.id at every start (a killed relay's share of the keys moves after member_ttl)"
	if cfg.StableRelayIDs {
		ids = "the same relay.id at every restart"
	}
	rep.Notes = append(rep.Notes, r.db.notes(ids)...)
	rep.Notes = append(rep.Notes, fmt.Sprintf("relays: %d `outbox relay` processes; database and broker reached through fault proxies; backoff 50ms–1s, max_attempts 100, publish_timeout 5s", cfg.Relays))
	return nil
}

// resolveCommitted marks the messages whose business rows exist.
func (r *run) resolveCommitted(ctx context.Context, led *ledger) error {
	var idxs []int64
	err := retry(ctx, func() error {
		var err error
		idxs, err = r.db.committed(ctx)
		return err
	})
	if err != nil {
		return err
	}
	led.mu.Lock()
	defer led.mu.Unlock()
	for _, i := range idxs {
		if int(i) < len(led.entries) {
			led.entries[i].inDB = true
		}
	}
	return nil
}

// retry runs fn until it succeeds or ctx ends (the database may be restarting).
func retry(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// waitDrained waits until every committed message was delivered; false when ctx ended first.
func waitDrained(ctx context.Context, led *ledger) bool {
	for {
		led.mu.Lock()
		missing := 0
		for i := range led.entries {
			if e := &led.entries[i]; e.inDB && e.copies == 0 {
				missing++
			}
		}
		led.mu.Unlock()
		if missing == 0 {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// cleanup releases everything; the work dir and the schema (or database) stay when asked to,
// or when the run found violations (the schema holds the outbox and dead-letter tables'
// state, the work dir the relays' logs).
func (r *run) cleanup(rep *Report) {
	r.relays.stop(15 * time.Second)
	r.consumers.stop(15 * time.Second)
	if r.stopConsume != nil {
		r.stopConsume()
		r.consumerWG.Wait()
	}
	if r.brk != nil {
		r.brk.close()
	}
	if r.dbProxy != nil {
		r.dbProxy.Close()
	}
	keep := r.cfg.Keep || !rep.OK()
	rep.Notes = append(rep.Notes, r.db.close(keep)...)
	if r.ownWorkDir && !keep {
		_ = os.RemoveAll(r.workDir)
		rep.WorkDir = ""
	}
}

// hostPort returns the host:port of a URL.
func hostPort(raw, defPort string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("parsing %q: %w", redact(raw), err)
	}
	host := cmpOr(u.Hostname(), "127.0.0.1")
	return net.JoinHostPort(host, cmpOr(u.Port(), defPort)), nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
