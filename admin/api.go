package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outboxgo/outbox/dialect"
)

// Status is GET /api/v1/status.
type Status struct {
	Table         string         `json:"table"`
	Version       string         `json:"version,omitempty"`
	UptimeSeconds float64        `json:"uptime_seconds"`
	ReadAt        time.Time      `json:"read_at"`
	Backlog       int64          `json:"backlog"`
	Ready         int64          `json:"ready"`
	Retrying      int64          `json:"retrying"`
	OldestSeconds float64        `json:"oldest_unpublished_seconds"`
	DeadLetters   int64          `json:"dead_letters"`
	LiveRelays    int            `json:"live_relays"`
	Duplicates    int64          `json:"broker_duplicates"`
	FailingTopics []FailingTopic `json:"failing_topics"`
	PausedSinks   []PausedSink   `json:"paused_sinks"`
	// OperatorPauses are the operator pauses this server's relay read last (Config.Relay).
	OperatorPauses []Pause       `json:"operator_pauses"`
	Source         *SourceStatus `json:"source,omitempty"`
	Checks         []Check       `json:"checks"`
	ReadyOK        bool          `json:"ready_ok"`
}

// FailingTopic is a topic with unpublished messages that failed.
type FailingTopic struct {
	Topic     string `json:"topic"`
	Failing   int64  `json:"failing"`
	LastError string `json:"last_error"`
}

// PausedSink is a sink the relay paused.
type PausedSink struct {
	Name      string    `json:"name"`
	Since     time.Time `json:"since"`
	NextProbe time.Time `json:"next_probe"`
	Probes    int       `json:"failed_probes"`
	Error     string    `json:"error"`
}

// SourceStatus is what the relay's source reports.
type SourceStatus struct {
	Connected       bool   `json:"connected"`
	Standby         bool   `json:"standby,omitempty"`
	Claims          uint64 `json:"claims,omitempty"`
	EmptyClaims     uint64 `json:"empty_claims,omitempty"`
	ClaimErrors     uint64 `json:"claim_errors,omitempty"`
	OwnedPartitions int    `json:"owned_partitions,omitempty"`
	Partitions      int    `json:"partitions,omitempty"`
	Pending         int    `json:"pending,omitempty"`
	RetainedBytes   *int64 `json:"wal_retained_bytes,omitempty"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, at, err := s.stats(r.Context())
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "reading the outbox: "+err.Error())
		return
	}
	out := Status{Table: s.cfg.Table, Version: s.cfg.Version, UptimeSeconds: time.Since(s.started).Seconds(), ReadAt: at.UTC(),
		Backlog: st.Pending, Ready: st.Ready, Retrying: st.Retrying, OldestSeconds: st.OldestPending.Seconds(),
		DeadLetters: st.DeadLetters, LiveRelays: st.Relays, Duplicates: st.BrokerDuplicates,
		FailingTopics: []FailingTopic{}, PausedSinks: []PausedSink{}, OperatorPauses: []Pause{}}
	for _, t := range st.Topics {
		out.FailingTopics = append(out.FailingTopics, FailingTopic{Topic: t.Topic, Failing: t.Failing, LastError: t.LastError})
	}
	if s.cfg.Relay != nil {
		for _, p := range s.cfg.Relay.Paused() {
			out.PausedSinks = append(out.PausedSinks, PausedSink{Name: p.Name, Since: p.Since.UTC(), NextProbe: p.NextProbe.UTC(), Probes: p.Probes, Error: p.Error})
		}
		for _, p := range s.cfg.Relay.OperatorPauses() {
			out.OperatorPauses = append(out.OperatorPauses, toAPIPause(p))
		}
	}
	if s.cfg.Source != nil {
		ss := s.cfg.Source()
		src := &SourceStatus{Connected: ss.Connected, Standby: ss.Standby, Claims: ss.Claims, EmptyClaims: ss.EmptyClaims,
			ClaimErrors: ss.ClaimErrors, OwnedPartitions: ss.OwnedPartitions, Partitions: ss.Partitions, Pending: ss.Pending}
		if ss.HasRetained {
			src.RetainedBytes = &ss.RetainedBytes
		}
		out.Source = src
	}
	out.Checks, out.ReadyOK = s.Ready(r.Context())
	writeJSON(w, http.StatusOK, out)
}

// DeadLetter is one dead letter in the API.
type DeadLetter struct {
	ID        int64             `json:"id"`
	Seq       int64             `json:"seq"`
	MessageID string            `json:"message_id"`
	Topic     string            `json:"topic"`
	Key       string            `json:"key,omitempty"`
	Type      string            `json:"type,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
	Payload   string            `json:"payload"`
	PayloadB  bool              `json:"payload_truncated,omitempty"`
	Attempts  int               `json:"attempts"`
	CreatedAt time.Time         `json:"created_at"`
	FailedAt  time.Time         `json:"failed_at"`
	Error     string            `json:"error"`
}

// maxPayloadShown bounds the payload a listing carries per dead letter.
const maxPayloadShown = 4096

func toAPI(d dialect.DeadLetter) DeadLetter {
	p := d.Record.Payload
	trunc := len(p) > maxPayloadShown
	if trunc {
		p = p[:maxPayloadShown]
	}
	return DeadLetter{ID: d.ID, Seq: d.Record.Seq, MessageID: d.Record.ID.String(), Topic: d.Record.Topic, Key: d.Record.Key,
		Type: d.Record.Type, Headers: d.Record.Headers, Payload: strings.ToValidUTF8(string(p), "\uFFFD"), PayloadB: trunc,
		Attempts: d.Record.Attempts, CreatedAt: d.Record.CreatedAt.UTC(), FailedAt: d.FailedAt.UTC(), Error: d.LastError}
}

// filter selects dead letters: by exact topic and key, and a substring of the error.
type filter struct {
	Topic string `json:"topic,omitempty"`
	Key   string `json:"key,omitempty"`
	Error string `json:"error,omitempty"`
}

func (f filter) empty() bool { return f == filter{} }

func (f filter) match(d *dialect.DeadLetter) bool {
	return (f.Topic == "" || d.Record.Topic == f.Topic) && (f.Key == "" || d.Record.Key == f.Key) &&
		(f.Error == "" || strings.Contains(d.LastError, f.Error))
}

// scanLimit bounds the dead letters one request reads while filtering or grouping.
const scanLimit = 100_000

// scan calls fn with the dead letters after afterID in id order until fn returns false or
// scanLimit rows were read; it returns the id of the last row read and whether rows remain.
func (s *Server) scan(r *http.Request, afterID int64, fn func(d *dialect.DeadLetter) bool) (last int64, more bool, err error) {
	last = afterID
	read := 0
	for read < scanLimit {
		page, err := s.cfg.Store.DeadLetters(r.Context(), last, 1000)
		if err != nil {
			return last, false, err
		}
		for i := range page {
			read++
			last = page[i].ID
			if !fn(&page[i]) {
				return last, i < len(page)-1 || len(page) == 1000, nil
			}
		}
		if len(page) < 1000 {
			return last, false, nil
		}
	}
	return last, true, nil
}

func queryFilter(r *http.Request) filter {
	q := r.URL.Query()
	return filter{Topic: q.Get("topic"), Key: q.Get("key"), Error: q.Get("error")}
}

func (s *Server) listDead(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), 100, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, "limit: "+err.Error())
		return
	}
	after, err := intParam(q.Get("after"), 0, 0, 1<<62)
	if err != nil {
		writeError(w, http.StatusBadRequest, "after: "+err.Error())
		return
	}
	f := queryFilter(r)
	out := []DeadLetter{}
	last, more, err := s.scan(r, int64(after), func(d *dialect.DeadLetter) bool {
		if f.match(d) {
			out = append(out, toAPI(*d))
		}
		return len(out) < limit
	})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "reading dead letters: "+err.Error())
		return
	}
	resp := map[string]any{"dead_letters": out}
	if more {
		resp["next"] = strconv.FormatInt(last, 10) // pass as after= for the next page
	}
	writeJSON(w, http.StatusOK, resp)
}

// Group is dead letters of one topic whose errors read alike.
type Group struct {
	Topic       string    `json:"topic"`
	Error       string    `json:"error"` // normalised: numbers, ids and quoted values replaced
	Sample      string    `json:"sample_error"`
	Count       int       `json:"count"`
	FirstFailed time.Time `json:"first_failed_at"`
	LastFailed  time.Time `json:"last_failed_at"`
	IDs         []int64   `json:"ids"` // the first 100
}

var (
	reUUID   = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	reQuoted = regexp.MustCompile(`"[^"]*"|'[^']*'`)
	reHex    = regexp.MustCompile(`\b0x[0-9a-fA-F]+\b`)
	reNumber = regexp.MustCompile(`\d+(\.\d+)?`)
)

// NormalizeError folds the variable parts of an error (ids, quoted values, numbers) so that
// errors of one cause group together.
func NormalizeError(e string) string {
	e = reUUID.ReplaceAllString(e, "<id>")
	e = reQuoted.ReplaceAllString(e, "<value>")
	e = reHex.ReplaceAllString(e, "<hex>")
	return reNumber.ReplaceAllString(e, "<n>")
}

func (s *Server) groupDead(w http.ResponseWriter, r *http.Request) {
	f := queryFilter(r)
	groups := map[[2]string]*Group{}
	_, more, err := s.scan(r, 0, func(d *dialect.DeadLetter) bool {
		if !f.match(d) {
			return true
		}
		k := [2]string{d.Record.Topic, NormalizeError(d.LastError)}
		g := groups[k]
		if g == nil {
			g = &Group{Topic: k[0], Error: k[1], Sample: d.LastError, FirstFailed: d.FailedAt.UTC(), LastFailed: d.FailedAt.UTC()}
			groups[k] = g
		}
		g.Count++
		if len(g.IDs) < 100 {
			g.IDs = append(g.IDs, d.ID)
		}
		if d.FailedAt.Before(g.FirstFailed) {
			g.FirstFailed = d.FailedAt.UTC()
		}
		if d.FailedAt.After(g.LastFailed) {
			g.LastFailed, g.Sample = d.FailedAt.UTC(), d.LastError
		}
		return true
	})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "reading dead letters: "+err.Error())
		return
	}
	out := make([]*Group, 0, len(groups))
	for _, g := range groups {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b *Group) int {
		if a.Count != b.Count {
			return b.Count - a.Count
		}
		return strings.Compare(a.Topic+a.Error, b.Topic+b.Error)
	})
	writeJSON(w, http.StatusOK, map[string]any{"groups": out, "truncated": more})
}

// Selection is the body of the retry and purge endpoints: exactly one of IDs, Filter (topic,
// key, error) and All.
type Selection struct {
	IDs    []int64 `json:"ids,omitempty"`
	Filter *filter `json:"filter,omitempty"`
	All    bool    `json:"all,omitempty"`
	DryRun bool    `json:"dry_run,omitempty"`
}

// Result is the answer of the retry and purge endpoints.
type Result struct {
	DryRun  bool  `json:"dry_run"`
	Matched int64 `json:"matched"` // dead letters selected
	Done    int64 `json:"done"`    // moved back to the outbox, or deleted (0 when dry_run)
}

func (s *Server) retryDead(w http.ResponseWriter, r *http.Request) {
	s.mutate(w, r, "retry", s.cfg.Store.RetryDeadLetters)
}

func (s *Server) purgeDead(w http.ResponseWriter, r *http.Request) {
	s.mutate(w, r, "purge", s.cfg.Store.PurgeDeadLetters)
}

func (s *Server) mutate(w http.ResponseWriter, r *http.Request, verb string, apply func(ctx context.Context, ids []int64) (int64, error)) {
	var sel Selection
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sel); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	n := 0
	if len(sel.IDs) > 0 {
		n++
	}
	if sel.Filter != nil {
		n++
	}
	if sel.All {
		n++
	}
	if n != 1 {
		writeError(w, http.StatusBadRequest, `body: give exactly one of "ids", "filter" and "all"`)
		return
	}
	if sel.Filter != nil && sel.Filter.empty() {
		writeError(w, http.StatusBadRequest, `body: an empty filter; use "all": true to select every dead letter`)
		return
	}
	ids := sel.IDs
	var matched int64
	switch {
	case sel.All:
		st, err := s.cfg.Store.Stats(r.Context())
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "reading the outbox: "+err.Error())
			return
		}
		matched = st.DeadLetters
	case sel.Filter != nil:
		f := *sel.Filter
		_, more, err := s.scan(r, 0, func(d *dialect.DeadLetter) bool {
			if f.match(d) {
				ids = append(ids, d.ID)
			}
			return true
		})
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, "reading dead letters: "+err.Error())
			return
		}
		if more {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the filter would scan more than %d dead letters; narrow it, or page with ids", scanLimit))
			return
		}
		matched = int64(len(ids))
	default:
		slices.Sort(ids)
		ids = slices.Compact(ids)
		matched = int64(len(ids))
	}
	res := Result{DryRun: sel.DryRun, Matched: matched}
	if !sel.DryRun && matched > 0 {
		var err error
		if sel.All {
			res.Done, err = apply(r.Context(), nil)
		} else {
			for chunk := range slices.Chunk(ids, 1000) {
				var k int64
				k, err = apply(r.Context(), chunk)
				res.Done += k
				if err != nil {
					break
				}
			}
		}
		if err != nil {
			s.audit(r, verb, sel, res, err)
			writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("%s: %v (%d done before the error)", verb, err, res.Done))
			return
		}
	}
	s.audit(r, verb, sel, res, nil)
	writeJSON(w, http.StatusOK, res)
}

// audit logs one line per mutation: who (the remote address; never the token), what and how
// many.
func (s *Server) audit(r *http.Request, verb string, sel Selection, res Result, err error) {
	attrs := []any{"action", "dead_letters." + verb, "remote", r.RemoteAddr, "dry_run", sel.DryRun,
		"matched", res.Matched, "done", res.Done, "all", sel.All, "ids", len(sel.IDs)}
	if sel.Filter != nil {
		attrs = append(attrs, "filter_topic", sel.Filter.Topic, "filter_key", sel.Filter.Key, "filter_error", sel.Filter.Error)
	}
	if err != nil {
		s.logger.Warn("admin: mutation failed", append(attrs, "error", err)...)
		return
	}
	s.logger.Info("admin: mutation", attrs...)
}

func intParam(v string, def, lo, hi int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%q is not a whole number between %d and %d", v, lo, hi)
	}
	return n, nil
}
