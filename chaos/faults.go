package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outboxgo/outbox/internal/testutil/faultproxy"
	"github.com/outboxgo/outbox/relay"
)

// faulter injects faults at random moments until its context ends. Relay kills run on their
// own schedule; infrastructure faults (broker, database) one at a time, cycling through a
// shuffled list of the enabled kinds so that a short run sees each of them. Every fault is
// healed before run returns, whatever the context.
type faulter struct {
	cfg       *Config
	brk       broker
	relays    *relayProcs
	consumers *relayProcs // nil without Config.Consumers
	dbProxy   *faultproxy.Proxy
	db        database
	start     time.Time
	log       *slog.Logger

	mu     sync.Mutex
	faults []Fault
	healed time.Time
}

func (f *faulter) run(ctx context.Context) {
	var wg sync.WaitGroup
	if f.cfg.enabled(FaultKill) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.killLoop(ctx)
		}()
	}
	if f.consumers != nil && f.cfg.enabled(FaultConsumerKill) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.consumerKillLoop(ctx)
		}()
	}
	f.infraLoop(ctx)
	wg.Wait()
}

// jitter returns a duration uniformly in [mean/2, 3·mean/2).
func jitter(rng *rand.Rand, mean time.Duration) time.Duration {
	return mean/2 + time.Duration(rng.Int64N(int64(mean)))
}

// outage returns how long a fault keeps its service away: uniform in [200ms, MaxOutage].
func (f *faulter) outage(rng *rand.Rand) time.Duration {
	lo := min(200*time.Millisecond, f.cfg.MaxOutage)
	return lo + time.Duration(rng.Int64N(int64(f.cfg.MaxOutage-lo)+1))
}

func (f *faulter) killLoop(ctx context.Context) {
	rng := rand.New(rand.NewPCG(f.cfg.Seed, 1<<32))
	for {
		_ = relay.Sleep(ctx, jitter(rng, f.cfg.KillInterval))
		if ctx.Err() != nil {
			return
		}
		i := rng.IntN(f.cfg.Relays)
		pause := time.Duration(rng.Int64N(int64(time.Second)))
		at := time.Now()
		f.relays.kill(i, pause)
		f.record(Fault{Kind: FaultKill, AtSec: f.since(at), HealedSec: f.since(at.Add(pause)),
			Detail: fmt.Sprintf("relay %d, restarted after %s", i, pause.Round(time.Millisecond))}, at.Add(pause))
	}
}

// consumerKillLoop kill -9s a consumer process now and then, as killLoop does relays.
func (f *faulter) consumerKillLoop(ctx context.Context) {
	rng := rand.New(rand.NewPCG(f.cfg.Seed, 3<<32))
	n := len(f.consumers.slots)
	for {
		_ = relay.Sleep(ctx, jitter(rng, f.cfg.ConsumerKillInterval))
		if ctx.Err() != nil {
			return
		}
		i := rng.IntN(n)
		pause := time.Duration(rng.Int64N(int64(time.Second)))
		at := time.Now()
		f.consumers.kill(i, pause)
		f.record(Fault{Kind: FaultConsumerKill, AtSec: f.since(at), HealedSec: f.since(at.Add(pause)),
			Detail: fmt.Sprintf("consumer %d, restarted after %s", i, pause.Round(time.Millisecond))}, at.Add(pause))
	}
}

func (f *faulter) infraLoop(ctx context.Context) {
	rng := rand.New(rand.NewPCG(f.cfg.Seed, 2<<32))
	var kinds []string
	for _, k := range []string{FaultBrokerRestart, FaultBrokerCut, FaultDBCut, FaultDBTerminate, FaultPGRestart} {
		if k == FaultBrokerRestart && !f.brk.canRestart() {
			continue // the broker's notes say what replaces it
		}
		if f.cfg.enabled(k) {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		<-ctx.Done()
		return
	}
	rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	for n := 0; ; n++ {
		_ = relay.Sleep(ctx, jitter(rng, f.cfg.FaultInterval))
		if ctx.Err() != nil {
			return
		}
		kind := kinds[n%len(kinds)]
		down := f.outage(rng)
		at := time.Now()
		detail, err := f.inject(kind, down)
		if err != nil {
			detail = strings.TrimSpace(detail + " error: " + err.Error())
			f.log.Warn("fault", slog.String("kind", kind), slog.Any("error", err))
		}
		healed := time.Now()
		f.record(Fault{Kind: kind, AtSec: f.since(at), HealedSec: f.since(healed), Detail: detail}, healed)
	}
}

// inject runs one infrastructure fault to its end (service back).
func (f *faulter) inject(kind string, down time.Duration) (string, error) {
	ctx := context.Background() // a fault always heals
	switch kind {
	case FaultBrokerRestart:
		err := f.brk.restart(ctx, down)
		return fmt.Sprintf("down %s", down.Round(time.Millisecond)), err
	case FaultBrokerCut:
		f.brk.cut()
		time.Sleep(down)
		f.brk.restore()
		return fmt.Sprintf("cut %s", down.Round(time.Millisecond)), nil
	case FaultDBCut:
		f.dbProxy.Cut()
		time.Sleep(down)
		f.dbProxy.Restore()
		return fmt.Sprintf("cut %s", down.Round(time.Millisecond)), nil
	case FaultDBTerminate:
		// What a database restart looks like to the relays, without restarting the shared
		// server: the server ends their sessions ("terminating connection due to
		// administrator command", "Connection was killed"), and reconnecting fails for a
		// while.
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := f.db.terminateRelays(tctx)
		f.dbProxy.Cut()
		time.Sleep(down)
		f.dbProxy.Restore()
		return fmt.Sprintf("%d sessions terminated, reconnects refused for %s", n, down.Round(time.Millisecond)), err
	case FaultPGRestart:
		return f.restartPostgres(ctx)
	}
	return "", fmt.Errorf("unknown fault %q", kind)
}

// restartPostgres restarts the whole server with Config.PGRestartCommand.
func (f *faulter) restartPostgres(ctx context.Context) (string, error) {
	args := f.cfg.PGRestartCommand
	if len(args) == 0 {
		pg, ok := f.db.(*postgresDB)
		if !ok {
			return "", fmt.Errorf("%s needs PostgreSQL", FaultPGRestart) // Config.validate refuses it
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		major, err := pg.majorVersion(qctx)
		cancel()
		if err != nil {
			return "", fmt.Errorf("reading the server version for pg_ctlcluster: %w", err)
		}
		args = []string{"pg_ctlcluster", strconv.Itoa(major), "main", "restart"}
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(cctx, args[0], args[1:]...).CombinedOutput()
	detail := strings.Join(args, " ")
	if s := strings.TrimSpace(string(out)); s != "" {
		detail += ": " + s
	}
	return detail, err
}

func (f *faulter) since(t time.Time) float64 { return t.Sub(f.start).Seconds() }

func (f *faulter) record(ft Fault, healed time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, ft)
	if healed.After(f.healed) {
		f.healed = healed
	}
	f.log.Debug("fault", slog.String("kind", ft.Kind), slog.Float64("at", ft.AtSec), slog.String("detail", ft.Detail))
}

func (f *faulter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.faults)
}

// result returns the faults in order of injection and when the last one healed.
func (f *faulter) result() ([]Fault, time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Fault(nil), f.faults...), f.healed
}
