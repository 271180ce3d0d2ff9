package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/metrics"
	"github.com/outboxgo/outbox/relay"
)

// Config configures a Server. Store is required; the rest adds what the server can tell.
type Config struct {
	// Store is the outbox the API reads and repairs (status, dead letters).
	Store dialect.Admin
	// Table names the outbox table in answers.
	Table string
	// Stats, when set, serves the figures it last read (a metrics.Table that runs) instead
	// of a query per request, and tells /readyz whether the database answers.
	Stats *metrics.Table
	// Relay, when set, tells /readyz and the status which sinks are paused (outages: an
	// operator pause fails no check), and the status which operator pauses it holds.
	Relay *relay.Relay
	// Source, when set, tells /readyz whether the source works (metrics.SourceStats's
	// Connected) and the status what it reports.
	Source func() metrics.SourceStats
	// Gatherer serves /metrics. Default: none (404).
	Gatherer prometheus.Gatherer
	// MaxLag, when positive, makes /readyz fail while the oldest unpublished message is
	// older than this.
	MaxLag time.Duration
	// Token is the admin bearer token the mutating endpoints require; without it they are
	// disabled (403). ReadToken, when set, is required (or Token) by every other endpoint
	// but /healthz and /readyz; without it reading is open.
	Token, ReadToken string
	// Logger receives one audit line per mutation. Default slog.Default().
	Logger *slog.Logger
	// Version is reported by the status.
	Version string
	// History, when set, serves GET /api/v1/history: the last hour of samples (run it).
	History *History
	// RelayID names this process's relay in the membership table (poll.Source.RelayID):
	// GET /api/v1/relays marks it self. SourceKind names its source there (poll, wal or
	// binlog), beside what Source reports. RelayTTL is the relays' member TTL: relays silent
	// for longer are not live. Default poll.DefaultMemberTTL.
	RelayID, SourceKind string
	RelayTTL            time.Duration
	// Retention is how long the relay keeps published rows (its retention option): POST
	// /api/v1/replay answers 409 while it is 0 (none are kept).
	Retention time.Duration
	// Inboxes are the consumers' inboxes GET /api/v1/inboxes reports on (404 without any).
	Inboxes []Inbox
}

// Server is the admin HTTP server's handler: health, metrics, the JSON API.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	mux     *http.ServeMux
	started time.Time
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, &outbox.ConfigError{Field: "store", Reason: "required"}
	}
	if cfg.Token != "" && cfg.Token == cfg.ReadToken {
		return nil, &outbox.ConfigError{Field: "admin.read_token", Reason: "must differ from admin.token"}
	}
	for field, tok := range map[string]string{"admin.token": cfg.Token, "admin.read_token": cfg.ReadToken} {
		if tok != "" && len(tok) < MinTokenBytes {
			return nil, &outbox.ConfigError{Field: field, Reason: fmt.Sprintf("must be at least %d bytes", MinTokenBytes)}
		}
	}
	s := &Server{cfg: cfg, logger: cfg.Logger, mux: http.NewServeMux(), started: time.Now()}
	if s.logger == nil {
		s.logger = slog.Default()
	}
	s.routes()
	return s, nil
}

// MinTokenBytes is the shortest token New accepts.
const MinTokenBytes = 16

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	s.mux.ServeHTTP(w, r)
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	if s.cfg.Gatherer != nil {
		h := promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
		s.mux.HandleFunc("GET /metrics", s.reads(h.ServeHTTP))
	}
	s.mux.HandleFunc("GET /api/v1/status", s.reads(s.status))
	s.mux.HandleFunc("GET /api/v1/history", s.reads(s.history))
	s.mux.HandleFunc("GET /api/v1/dead-letters", s.reads(s.listDead))
	s.mux.HandleFunc("GET /api/v1/dead-letters/groups", s.reads(s.groupDead))
	s.mux.HandleFunc("POST /api/v1/dead-letters/retry", s.writes(s.retryDead))
	s.mux.HandleFunc("POST /api/v1/dead-letters/purge", s.writes(s.purgeDead))
	s.mux.HandleFunc("GET /api/v1/topics", s.reads(s.topics))
	s.mux.HandleFunc("GET /api/v1/relays", s.reads(s.relays))
	s.mux.HandleFunc("GET /api/v1/inboxes", s.reads(s.inboxes))
	s.mux.HandleFunc("POST /api/v1/replay", s.writes(s.replay))
	s.mux.HandleFunc("GET /api/v1/pauses", s.reads(s.listPauses))
	s.mux.HandleFunc("POST /api/v1/pauses", s.writes(s.addPause))
	s.mux.HandleFunc("DELETE /api/v1/pauses/{kind}/{name...}", s.writes(s.deletePause))
	s.dashboardRoutes()
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
}

func (s *Server) history(w http.ResponseWriter, _ *http.Request) {
	if s.cfg.History == nil {
		writeError(w, http.StatusNotFound, "this server keeps no history")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"interval_seconds": s.cfg.History.interval.Seconds(), "samples": s.cfg.History.Samples()})
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Check is one readiness check's result.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// Ready runs the readiness checks: database (the outbox's figures read lately, or a query
// now without Stats), source (Config.Source connected), sinks (none paused), lag (oldest
// unpublished message within MaxLag). It reports whether all passed.
func (s *Server) Ready(ctx context.Context) ([]Check, bool) {
	var checks []Check
	st, readAt, err := s.stats(ctx)
	db := Check{Name: "database", OK: err == nil}
	if err != nil {
		db.Reason = "the database does not answer: " + err.Error()
	}
	checks = append(checks, db)
	if s.cfg.Source != nil {
		c := Check{Name: "source", OK: s.cfg.Source().Connected}
		if !c.OK {
			c.Reason = "the source is not connected (heartbeat failing, or a log source not streaming)"
		}
		checks = append(checks, c)
	}
	if s.cfg.Relay != nil {
		c := Check{Name: "sinks", OK: true}
		for _, p := range s.cfg.Relay.Paused() {
			c.OK = false
			c.Reason += fmt.Sprintf("sink %s paused since %s: %s; ", p.Name, p.Since.UTC().Format(time.RFC3339), p.Error)
		}
		checks = append(checks, c)
	}
	if s.cfg.MaxLag > 0 {
		c := Check{Name: "lag", OK: err == nil && st.OldestPending <= s.cfg.MaxLag}
		switch {
		case err != nil:
			c.Reason = "unknown: the database does not answer"
		case !c.OK:
			c.Reason = fmt.Sprintf("the oldest unpublished message is %s old (read %s ago), above %s",
				st.OldestPending.Round(time.Millisecond), time.Since(readAt).Round(time.Second), s.cfg.MaxLag)
		}
		checks = append(checks, c)
	}
	ok := true
	for _, c := range checks {
		ok = ok && c.OK
	}
	return checks, ok
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	checks, ok := s.Ready(r.Context())
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"ready": ok, "checks": checks})
}

// stats returns the outbox's figures: Stats's last read when it is recent, else a query.
func (s *Server) stats(ctx context.Context) (dialect.Stats, time.Time, error) {
	if s.cfg.Stats != nil {
		st, at, err := s.cfg.Stats.Last()
		if err != nil {
			return st, at, err
		}
		if !at.IsZero() {
			return st, at, nil
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := s.cfg.Store.Stats(ctx)
	return st, time.Now(), err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// apiError is every error answer's body.
type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}
