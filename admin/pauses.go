package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/outboxgo/outbox/dialect"
)

// Pause is one operator pause in GET /api/v1/pauses and the answer of POST /api/v1/pauses.
type Pause struct {
	Kind     string    `json:"kind"` // "topic" or "sink"
	Name     string    `json:"name"`
	Reason   string    `json:"reason"`
	PausedBy string    `json:"paused_by"`
	Since    time.Time `json:"since"`
}

// Pauses are GET /api/v1/pauses: every operator pause of the table, by kind then name.
type Pauses struct {
	Pauses []Pause `json:"pauses"`
}

// PauseRequest is the body of POST /api/v1/pauses.
type PauseRequest struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Reason string `json:"reason,omitempty"`
}

func toAPIPause(p dialect.Pause) Pause {
	return Pause{Kind: string(p.Kind), Name: p.Name, Reason: p.Reason, PausedBy: p.PausedBy, Since: p.PausedAt.UTC()}
}

// pauser returns the store's dialect.Pauser, answering 404 when it has none.
func (s *Server) pauser(w http.ResponseWriter) (dialect.Pauser, bool) {
	p, ok := s.cfg.Store.(dialect.Pauser)
	if !ok {
		writeError(w, http.StatusNotFound, "this store keeps no pauses")
	}
	return p, ok
}

// pauseError answers a Pauser's error: 409 for a schema without the pauses table (and for
// ErrAlreadyPaused), 404 for ErrNotPaused, 503 otherwise.
func pauseError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, dialect.ErrNoPausesTable):
		writeError(w, http.StatusConflict, err.Error()+": the outbox's schema predates pauses; run 'outbox migrate up'")
	case errors.Is(err, dialect.ErrAlreadyPaused):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, dialect.ErrNotPaused):
		writeError(w, http.StatusNotFound, err.Error())
	default:
		writeError(w, http.StatusServiceUnavailable, err.Error())
	}
}

func (s *Server) listPauses(w http.ResponseWriter, r *http.Request) {
	pr, ok := s.pauser(w)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	ps, err := pr.ListPauses(ctx)
	if err != nil {
		pauseError(w, err)
		return
	}
	out := Pauses{Pauses: make([]Pause, 0, len(ps))}
	for _, p := range ps {
		out.Pauses = append(out.Pauses, toAPIPause(p))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) addPause(w http.ResponseWriter, r *http.Request) {
	pr, ok := s.pauser(w)
	if !ok {
		return
	}
	var req PauseRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	p := dialect.Pause{Kind: dialect.PauseKind(req.Kind), Name: req.Name, Reason: req.Reason, PausedBy: "admin API from " + r.RemoteAddr}
	if err := p.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	attrs := []any{"action", "pause", "remote", r.RemoteAddr, "kind", req.Kind, "name", req.Name, "reason", req.Reason}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := pr.Pause(ctx, p); err != nil {
		s.logger.Warn("admin: mutation failed", append(attrs, "error", err)...)
		pauseError(w, err)
		return
	}
	s.logger.Info("admin: mutation", attrs...)
	// The pause as stored (with its time), when it can be read back.
	out := toAPIPause(p)
	if ps, err := pr.ListPauses(ctx); err == nil {
		for _, q := range ps {
			if q.Kind == p.Kind && q.Name == p.Name {
				out = toAPIPause(q)
			}
		}
	}
	writeJSON(w, http.StatusCreated, out)
}

func (s *Server) deletePause(w http.ResponseWriter, r *http.Request) {
	pr, ok := s.pauser(w)
	if !ok {
		return
	}
	kind, err := dialect.ParsePauseKind(r.PathValue("kind"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	name := r.PathValue("name")
	attrs := []any{"action", "resume", "remote", r.RemoteAddr, "kind", string(kind), "name", name}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := pr.Resume(ctx, kind, name); err != nil {
		s.logger.Warn("admin: mutation failed", append(attrs, "error", err)...)
		pauseError(w, err)
		return
	}
	s.logger.Info("admin: mutation", attrs...)
	writeJSON(w, http.StatusOK, map[string]any{"resumed": Pause{Kind: string(kind), Name: name}})
}

// pausedTopics returns the topics paused now, nil when the store keeps no pauses or they
// cannot be read (the topics' listing does not fail for it).
func (s *Server) pausedTopics(ctx context.Context) map[string]bool {
	pr, ok := s.cfg.Store.(dialect.Pauser)
	if !ok {
		return nil
	}
	ps, err := pr.ListPauses(ctx)
	if err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, p := range ps {
		if p.Kind == dialect.PauseTopic {
			out[p.Name] = true
		}
	}
	return out
}
