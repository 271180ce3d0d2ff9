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
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/faultproxy"
	"github.com/outboxgo/outbox/relay/wal"
)

// Run runs one checker: it starts a broker, a fresh schema with an outbox table and
// cfg.Relays `outbox relay` processes sharing it, subscribes a consumer, then for
// cfg.Duration commits (and rolls back) transactions while injecting faults at random
// moments; it waits (at most cfg.DrainTimeout) for every committed message to be delivered,
// stops everything and checks what the consumer got against what was committed.
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
	rep := Report{
		Sink: cfg.Sink, Source: cfg.Source, Relays: cfg.Relays, Keys: cfg.Keys, Producers: cfg.Producers, TxMessages: cfg.TxMessages,
		TargetRate: cfg.Rate, Seed: cfg.Seed, Faults: map[string]int{},
	}
	err := r.do(ctx, &rep)
	if err != nil {
		rep.Error = err.Error()
	}
	r.cleanup(&rep)
	return rep, err
}

// run holds one Run's resources, released by cleanup in reverse order.
type run struct {
	cfg *Config
	log *slog.Logger
	id  string

	logicalWriter *outbox.LogicalWriter

	workDir     string
	binary      string
	ownWorkDir  bool
	admin       *pgxpool.Pool
	schema      string
	table       string
	slot        string // the WAL source's replication slot (and publication), when it runs
	store       *postgres.Store
	dbProxy     *faultproxy.Proxy
	brk         broker
	relays      *relayProcs
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

	// Relays, then wait until all of them are registered.
	t0 := time.Now()
	appPrefix := "outbox_chaos_" + r.id + "_r"
	common := []string{
		"OUTBOX_TABLE=" + r.table,
		"OUTBOX_POLL_INTERVAL=50ms",
		"OUTBOX_POLL_BATCH_SIZE=500",
		"OUTBOX_RELAY_MAX_ATTEMPTS=100",
		"OUTBOX_RELAY_BACKOFF_BASE=50ms",
		"OUTBOX_RELAY_BACKOFF_MAX=1s",
		"OUTBOX_RELAY_PUBLISH_TIMEOUT=5s",
		"OUTBOX_RELAY_BATCH_TIMEOUT=15s",
		"OUTBOX_RELAY_SHUTDOWN_TIMEOUT=5s",
		"OUTBOX_LOG_LEVEL=" + cfg.RelayLogLevel,
	}
	if cfg.wal() {
		mode := "table"
		if cfg.Source == SourceWALLogical {
			mode = "logical"
		}
		common = append(common, "OUTBOX_SOURCE=wal", "OUTBOX_WAL_SLOT="+r.slot, "OUTBOX_WAL_MODE="+mode,
			"OUTBOX_WAL_MESSAGE_PREFIX="+r.slot, "OUTBOX_WAL_BATCH_SIZE=500")
	}
	common = append(common, r.brk.relayEnv()...)
	common = append(common, cfg.RelayEnv...)
	if len(cfg.RelayEnv) > 0 {
		rep.Notes = append(rep.Notes, "relay settings added: "+strings.Join(cfg.RelayEnv, " "))
	}
	relayURL, err := throughProxy(cfg.DatabaseURL, r.dbProxy.Addr())
	if err != nil {
		return err
	}
	r.relays = &relayProcs{bin: r.binary, dir: r.workDir, logger: r.log, start: t0,
		env: func(i int) []string {
			u := *relayURL
			q := u.Query()
			q.Set("application_name", appPrefix+strconv.Itoa(i))
			u.RawQuery = q.Encode()
			env := append([]string{"OUTBOX_DATABASE_URL=" + u.String()}, common...)
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

	// Load and faults.
	start := time.Now()
	led.mu.Lock()
	led.start = start
	led.mu.Unlock()
	prod := &producers{
		cfg:    cfg,
		pool:   r.admin,
		writer: r.writer(),
		orders: r.schema + ".chaos_orders",
		ledger: led,
	}
	f := &faulter{
		cfg: cfg, brk: r.brk, relays: r.relays, dbProxy: r.dbProxy, admin: r.admin,
		appPrefix: appPrefix, start: start, log: r.log,
	}
	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.Duration)
	defer stopLoad()
	if cfg.hook != nil {
		if err := cfg.hook(loadCtx, r, led); err != nil {
			return fmt.Errorf("test hook: %w", err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); prod.run(loadCtx) }()
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
	r.log.Info("drain", slog.Bool("drained", rep.Drained), slog.Duration("waited", time.Since(drainStart)))
	sleepCtx(ctx, time.Second)

	r.relays.stop(15 * time.Second)
	r.stopConsume()
	r.consumerWG.Wait()

	starts, exits := r.relays.stats()
	rep.RelayStarts, rep.RelayExits = starts, exits
	return r.verify(vctx, rep, led, start, loadEnd, healed)
}

// writer is what the producers enqueue with: outbox rows, or table-less logical messages for
// the WAL source's logical mode.
func (r *run) writer() enqueuer {
	if r.cfg.Source == SourceWALLogical {
		return r.logicalWriter
	}
	w, err := outbox.NewWriter(outbox.WriterConfig{Dialect: outbox.Postgres, Table: r.table})
	if err != nil {
		panic(err) // the table name is ours and valid
	}
	return w
}

// setup builds the relay binary, creates the schema and the broker.
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

	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("parsing the database URL: %w", err)
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "outbox_chaos_" + r.id
	pcfg.MaxConns = int32(cfg.Producers + 4)
	r.admin, err = pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	if err := r.admin.Ping(ctx); err != nil {
		return fmt.Errorf("connecting to PostgreSQL (is it running?): %w", err)
	}
	r.schema = "chaos_" + r.id
	if _, err := r.admin.Exec(ctx, `CREATE SCHEMA `+r.schema); err != nil {
		r.schema = ""
		return fmt.Errorf("creating the schema: %w", err)
	}
	r.table = r.schema + ".outbox"
	rep.OutboxTable = r.table
	if r.store, err = postgres.New(ctx, postgres.Config{Pool: r.admin, Table: r.table}); err != nil {
		return err
	}
	if _, err := r.store.MigrateUp(ctx); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	if cfg.wal() {
		if err := r.setupSlot(ctx); err != nil {
			return err
		}
	}
	if _, err := r.admin.Exec(ctx, `CREATE TABLE `+r.schema+`.chaos_orders (
		idx bigint PRIMARY KEY, message_id uuid NOT NULL, key text NOT NULL, seq integer NOT NULL)`); err != nil {
		return fmt.Errorf("creating the business table: %w", err)
	}
	pgAddr, err := hostPort(cfg.DatabaseURL, "5432")
	if err != nil {
		return err
	}
	if r.dbProxy, err = startProxy(pgAddr); err != nil {
		return err
	}

	switch cfg.Sink {
	case SinkNATS:
		r.brk, err = startNATS(filepath.Join(r.workDir, "nats"))
	case SinkKafka:
		r.brk, err = startKafka(filepath.Join(r.workDir, "kafka"))
	case SinkRabbitMQ:
		r.brk, err = startAMQP(cfg.AMQPURL, "outbox-chaos-"+r.id)
	}
	if err != nil {
		return fmt.Errorf("starting the %s broker: %w", cfg.Sink, err)
	}
	rep.Notes = append(rep.Notes, r.brk.notes()...)
	ids := "a new relay.id at every start (a killed relay's share of the keys moves after member_ttl)"
	if cfg.StableRelayIDs {
		ids = "the same relay.id at every restart"
	}
	source := "poll source, LISTEN/NOTIFY, " + ids
	if cfg.wal() {
		source = fmt.Sprintf("%s source on slot %s: one reads, the others wait as hot standbys", cfg.Source, r.slot)
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("relays: %d `outbox relay` processes (%s); database and broker reached through fault proxies; backoff 50ms–1s, max_attempts 100, publish_timeout 5s", cfg.Relays, source))
	return nil
}

// setupSlot creates the WAL source's publication and slot before anything is produced (what
// commits before the slot exists is not in its stream), as `outbox migrate up --source wal`
// does.
func (r *run) setupSlot(ctx context.Context) error {
	mode := wal.ModeTable
	if r.cfg.Source == SourceWALLogical {
		mode = wal.ModeLogical
	}
	// The slot's name is also the logical messages' prefix: logical messages are
	// database-wide, and other outboxes in the database must not reach this run's relays.
	slot := "outbox_chaos_" + r.id
	if mode == wal.ModeLogical {
		lw, err := outbox.NewLogicalWriter(outbox.LogicalWriterConfig{Prefix: slot})
		if err != nil {
			return err
		}
		r.logicalWriter = lw
	}
	src, err := wal.New(wal.Config{ConnString: r.cfg.DatabaseURL, Pool: r.admin, Mode: mode, Table: r.table,
		SlotName: slot, MessagePrefix: slot, Logger: r.log})
	if err != nil {
		return err
	}
	r.slot = slot // cleanup drops it even when Setup fails halfway
	if err := src.Setup(ctx); err != nil {
		return fmt.Errorf("creating the replication slot: %w", err)
	}
	return nil
}

// waitRelays waits until every relay has registered in the membership table (WAL source:
// until one relay reads the slot).
func (r *run) waitRelays(ctx context.Context) error {
	if r.cfg.wal() {
		for {
			st, err := wal.Slot(ctx, r.admin, r.slot)
			if err == nil && st.Active {
				return nil
			}
			select {
			case <-ctx.Done():
				_, exits := r.relays.stats()
				return fmt.Errorf("waiting for a relay to read slot %s (last %+v, %v; exits %+v): %w", r.slot, st, err, exits, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	for {
		st, err := r.store.Stats(ctx)
		if err == nil && st.Relays >= r.cfg.Relays {
			return nil
		}
		select {
		case <-ctx.Done():
			_, exits := r.relays.stats()
			return fmt.Errorf("waiting for %d relays to register (last stats %+v, %v; exits %+v): %w", r.cfg.Relays, st, err, exits, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// resolveCommitted marks the messages whose business rows exist.
func (r *run) resolveCommitted(ctx context.Context, led *ledger) error {
	var idxs []int64
	err := retry(ctx, func() error {
		rows, err := r.admin.Query(ctx, `SELECT idx FROM `+r.schema+`.chaos_orders`)
		if err != nil {
			return err
		}
		defer rows.Close()
		idxs = idxs[:0]
		for rows.Next() {
			var i int64
			if err := rows.Scan(&i); err != nil {
				return err
			}
			idxs = append(idxs, i)
		}
		return rows.Err()
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

// cleanup releases everything; the work dir and the schema stay when asked to, or when the run
// found violations (the schema holds the outbox and dead-letter tables' state, the work dir
// the relays' logs).
func (r *run) cleanup(rep *Report) {
	if r.relays != nil {
		r.relays.stop(15 * time.Second)
	}
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
	if r.admin != nil && r.slot != "" {
		// Always: a slot left behind would pin WAL on the server.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := wal.DropSlot(ctx, r.admin, r.slot, 10*time.Second); err != nil {
			r.log.Warn("dropping the replication slot", slog.String("slot", r.slot), slog.Any("error", err))
			rep.Notes = append(rep.Notes, fmt.Sprintf("replication slot %s could not be dropped: %v; drop it: SELECT pg_drop_replication_slot('%s')", r.slot, err, r.slot))
		}
		if _, err := r.admin.Exec(ctx, `DROP PUBLICATION IF EXISTS `+r.slot); err != nil {
			r.log.Warn("dropping the publication", slog.String("publication", r.slot), slog.Any("error", err))
		}
		cancel()
	}
	if r.admin != nil {
		if r.schema != "" && !keep {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if _, err := r.admin.Exec(ctx, `DROP SCHEMA `+r.schema+` CASCADE`); err != nil {
				r.log.Warn("dropping the schema", slog.String("schema", r.schema), slog.Any("error", err))
			}
			cancel()
		} else if r.schema != "" {
			rep.Notes = append(rep.Notes, "schema kept for inspection: "+r.schema+" (DROP SCHEMA "+r.schema+" CASCADE when done)")
		}
		r.admin.Close()
	}
	if r.ownWorkDir && !keep {
		_ = os.RemoveAll(r.workDir)
		rep.WorkDir = ""
	}
}

// throughProxy returns the PostgreSQL URL with its host replaced by addr.
func throughProxy(raw, addr string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, fmt.Errorf("the database URL must be a postgres:// URL, got %q", redact(raw))
	}
	u.Host = addr
	return u, nil
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
