package admin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/outboxgo/outbox/dialect"
)

// ReplayRequest is the body of POST /api/v1/replay: the published messages the outbox keeps
// (retention) whose published_at is in [From, To), of these topics and keys when given.
type ReplayRequest struct {
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Topics []string  `json:"topics,omitempty"`
	Keys   []string  `json:"keys,omitempty"`
	DryRun bool      `json:"dry_run,omitempty"`
}

// ReplayResult is the answer of POST /api/v1/replay: Matched for a dry run, Replayed else.
type ReplayResult struct {
	DryRun   bool   `json:"dry_run"`
	Matched  *int64 `json:"matched,omitempty"`
	Replayed *int64 `json:"replayed,omitempty"`
}

func (s *Server) replay(w http.ResponseWriter, r *http.Request) {
	rp, ok := s.cfg.Store.(dialect.Replayer)
	if !ok {
		writeError(w, http.StatusNotFound, "this store cannot replay messages")
		return
	}
	if s.cfg.Retention <= 0 {
		writeError(w, http.StatusConflict, "the outbox keeps no published messages: the relay deletes them on publish "+
			"(set retention to keep them for a replay; 'outbox replay' works on what the table holds)")
		return
	}
	var req ReplayRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	f := dialect.ReplayFilter{From: req.From, To: req.To, Topics: req.Topics, Keys: req.Keys}
	if err := f.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	var (
		n   int64
		err error
		res = ReplayResult{DryRun: req.DryRun}
	)
	if req.DryRun {
		n, err = rp.CountPublished(r.Context(), f)
		res.Matched = &n
	} else {
		n, err = dialect.Replay(r.Context(), rp, f, 0, nil)
		res.Replayed = &n
	}
	attrs := []any{"action", "replay", "remote", r.RemoteAddr, "dry_run", req.DryRun,
		"from", req.From.UTC().Format(time.RFC3339Nano), "to", req.To.UTC().Format(time.RFC3339Nano),
		"topics", len(req.Topics), "keys", len(req.Keys), "messages", n}
	if err != nil {
		s.logger.Warn("admin: mutation failed", append(attrs, "error", err)...)
		msg := "replay: " + err.Error()
		if !req.DryRun {
			msg += fmt.Sprintf(" (%d replayed before the error)", n)
		}
		writeError(w, http.StatusServiceUnavailable, msg)
		return
	}
	s.logger.Info("admin: mutation", attrs...)
	writeJSON(w, http.StatusOK, res)
}
