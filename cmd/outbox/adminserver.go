package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/admin"
	"github.com/outboxgo/outbox/cmd/outbox/internal/config"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/metrics"
	"github.com/outboxgo/outbox/relay"
	"github.com/outboxgo/outbox/relay/binlog"
	"github.com/outboxgo/outbox/relay/poll"
	"github.com/outboxgo/outbox/relay/wal"
	"github.com/outboxgo/outbox/sink"
)

// ops is a relay's admin server: its metrics, from before the relay exists (the relay hook)
// until it stops.
type ops struct {
	cfg      config.Config
	logger   *slog.Logger
	reg      *prometheus.Registry
	relayM   *metrics.Relay
	table    *metrics.Table
	listener net.Listener
}

// newOps listens on admin.addr (so that a taken or wrong address fails the start, naming the
// setting) and prepares the metrics; nil when admin.addr is empty.
func newOps(ctx context.Context, cfg config.Config, st dialect.Store, snk sink.Sink, logger *slog.Logger) (*ops, error) {
	a := cfg.Admin
	if a.Addr == "" {
		return nil, nil
	}
	var tlsCfg *tls.Config
	if a.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(a.TLSCert, a.TLSKey)
		if err != nil {
			return nil, &outbox.ConfigError{Field: "admin.tls_cert", Reason: fmt.Sprintf("loading the certificate and key: %v", err)}
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", a.Addr)
	if err != nil {
		return nil, &outbox.ConfigError{Field: "admin.addr", Reason: err.Error()}
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	o := &ops{cfg: cfg, logger: logger, reg: prometheus.NewRegistry(), listener: ln}
	o.relayM = metrics.NewRelay(metrics.RelayOptions{Sink: snk, SinkName: sinkSummary(cfg), TopicLabel: a.TopicLabel})
	o.table = metrics.NewTable(metrics.TableOptions{Store: st, Table: cfg.Table, Interval: a.StatsInterval, Logger: logger})
	o.reg.MustRegister(o.relayM, o.table, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo())
	return o, nil
}

// buildInfo is outbox_build_info{version,goversion} 1.
func buildInfo() prometheus.Collector {
	version, goVersion := "(devel)", "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		if info.Main.Version != "" {
			version = info.Main.Version
		}
		goVersion = info.GoVersion
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "outbox_build_info", Help: "The relay's build: 1, labelled with its version.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": goVersion}})
	g.Set(1)
	return g
}

// sourceStats returns the metrics' view of src, and a loop to run for what costs a query
// (the WAL slot's retained bytes, the binlog's lag); nil when there is none.
func sourceStats(src relay.Source, interval time.Duration) (kind string, stats func() metrics.SourceStats, loop func(context.Context)) {
	switch s := src.(type) {
	case *poll.Source:
		return "poll", metrics.PollStats(s), nil
	case *wal.Source:
		var (
			mu       sync.Mutex
			retained int64
			known    bool
		)
		stats = func() metrics.SourceStats {
			st := s.Stats()
			mu.Lock()
			defer mu.Unlock()
			return metrics.SourceStats{Connected: st.Streaming, Pending: st.Pending, Reconnects: st.Reconnects,
				RetainedBytes: retained, HasRetained: known}
		}
		return "wal", stats, everyInterval(interval, func(ctx context.Context) {
			n, err := s.Lag(ctx)
			mu.Lock()
			retained, known = n, err == nil
			mu.Unlock()
		})
	case *binlog.Source:
		var (
			mu  sync.Mutex
			lag binlog.Lag
			ok  bool
		)
		stats = func() metrics.SourceStats {
			st := s.Stats()
			mu.Lock()
			defer mu.Unlock()
			return metrics.SourceStats{Connected: st.Streaming, Standby: st.Standby, Pending: st.Pending, Reconnects: st.Reconnects,
				LagSeconds: lag.Seconds, LagBytes: lag.Bytes, HasLag: ok}
		}
		return "binlog", stats, everyInterval(interval, func(ctx context.Context) {
			l, err := s.Lag(ctx)
			mu.Lock()
			lag, ok = l, err == nil
			mu.Unlock()
		})
	}
	return "", nil, nil
}

// everyInterval returns a loop calling read at once and then every interval, each call
// bounded by interval, until its context ends.
func everyInterval(interval time.Duration, read func(context.Context)) func(context.Context) {
	return func(ctx context.Context) {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			lctx, cancel := context.WithTimeout(ctx, interval)
			read(lctx)
			cancel()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}
}

// hook is the relay hook of the metrics.
func (o *ops) hook() relay.Hook { return o.relayM }

// run serves the admin server for r and src until ctx ends.
func (o *ops) run(ctx context.Context, st dialect.Store, r *relay.Relay, src relay.Source) error {
	o.relayM.Watch(r)
	kind, stats, loop := sourceStats(src, o.cfg.Admin.StatsInterval)
	if stats != nil {
		o.reg.MustRegister(metrics.NewSource(kind, stats))
	}
	history := admin.NewHistory(o.reg, 0, 0)
	ac := admin.Config{Store: st, Table: o.cfg.Table, Stats: o.table, Relay: r, Source: stats, History: history,
		Gatherer: o.reg, MaxLag: o.cfg.Admin.MaxLag, Token: string(o.cfg.Admin.Token), ReadToken: string(o.cfg.Admin.ReadToken),
		Logger: o.logger, Version: versionText(debug.ReadBuildInfo())}
	if err := adminInspect(ctx, &ac, o.cfg, st, src, kind); err != nil {
		return err
	}
	srv, err := admin.New(ac)
	if err != nil {
		return config.LibraryError("admin", "admin.", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { o.table.Run(ctx) })
	wg.Go(func() { history.Run(ctx) })
	if loop != nil {
		wg.Go(func() { loop(ctx) })
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(o.logger.Handler(), slog.LevelWarn)}
	wg.Go(func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	})
	scheme := "http"
	if o.cfg.Admin.TLSCert != "" {
		scheme = "https"
	}
	o.logger.Info("admin server listening", slog.String("addr", o.listener.Addr().String()), slog.String("scheme", scheme),
		slog.Bool("mutations", o.cfg.Admin.Token != ""), slog.Bool("read_token", o.cfg.Admin.ReadToken != ""))
	if err := hs.Serve(o.listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin server: %w", err)
	}
	return nil
}
