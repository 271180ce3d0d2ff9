package admin

import (
	"cmp"
	"context"
	"net/http"
	"time"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/relay/poll"
)

// Topic is one topic in GET /api/v1/topics.
type Topic struct {
	Topic         string  `json:"topic"`
	Pending       int64   `json:"pending"`
	Ready         int64   `json:"ready"`
	Retrying      int64   `json:"retrying"`
	OldestSeconds float64 `json:"oldest_unpublished_seconds"`
	DeadLetters   int64   `json:"dead_letters"`
	LastError     string  `json:"last_error"`
	// Paused says an operator paused the topic (POST /api/v1/pauses): false when the store
	// keeps no pauses or they could not be read.
	Paused bool `json:"paused"`
}

// Topics are GET /api/v1/topics: every topic with unpublished messages or dead letters, most
// pending first, then by name.
type Topics struct {
	Topics    []Topic `json:"topics"`
	Truncated bool    `json:"truncated"`
}

func (s *Server) topics(w http.ResponseWriter, r *http.Request) {
	in, ok := s.cfg.Store.(dialect.Inspector)
	if !ok {
		writeError(w, http.StatusNotFound, "this store cannot list its topics")
		return
	}
	limit, err := intParam(r.URL.Query().Get("limit"), 200, 1, 1000)
	if err != nil {
		writeError(w, http.StatusBadRequest, "limit: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	ts, err := in.Topics(ctx, limit+1)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "reading the outbox: "+err.Error())
		return
	}
	paused := s.pausedTopics(ctx)
	out := Topics{Topics: []Topic{}, Truncated: len(ts) > limit}
	for _, t := range ts[:min(len(ts), limit)] {
		out.Topics = append(out.Topics, Topic{Topic: t.Topic, Pending: t.Pending, Ready: t.Ready, Retrying: t.Retrying,
			OldestSeconds: t.OldestPending.Seconds(), DeadLetters: t.DeadLetters, LastError: t.LastError, Paused: paused[t.Topic]})
	}
	writeJSON(w, http.StatusOK, out)
}

// Relay is one live relay in GET /api/v1/relays.
type Relay struct {
	ID           string  `json:"id"`
	Group        string  `json:"group"`
	HeartbeatAge float64 `json:"heartbeat_age_seconds"`
	// Partition of Partitions: the relay's place among the live relays of its group, the
	// share of the key space it claims.
	Partition  int  `json:"partition"`
	Partitions int  `json:"partitions"`
	Self       bool `json:"self"`
}

// RelaySource is the source of this server's relay: its kind (poll, wal, binlog) and what it
// reports (as in the status).
type RelaySource struct {
	Kind string `json:"kind"`
	SourceStatus
}

// Relays are GET /api/v1/relays.
type Relays struct {
	Relays     []Relay      `json:"relays"`
	TTLSeconds float64      `json:"ttl_seconds"`
	Source     *RelaySource `json:"source,omitempty"`
}

func (s *Server) relays(w http.ResponseWriter, r *http.Request) {
	in, ok := s.cfg.Store.(dialect.Inspector)
	if !ok {
		writeError(w, http.StatusNotFound, "this store cannot list its relays")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	rows, err := in.Relays(ctx)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "reading the relays: "+err.Error())
		return
	}
	ttl := cmp.Or(s.cfg.RelayTTL, poll.DefaultMemberTTL)
	out := Relays{Relays: LiveRelays(rows, ttl, s.cfg.RelayID), TTLSeconds: ttl.Seconds()}
	if src := s.sourceStatus(); src != nil {
		out.Source = &RelaySource{Kind: s.cfg.SourceKind, SourceStatus: *src}
	}
	writeJSON(w, http.StatusOK, out)
}

// LiveRelays returns the relays of rows (a dialect.Inspector's, by group in heartbeat order)
// that heartbeat within ttl, each with its place among the live relays of its group (what
// dialect.MembershipOf gives its Heartbeat), self marking the one named self.
func LiveRelays(rows []dialect.RelayInfo, ttl time.Duration, self string) []Relay {
	groups := map[string][]string{}
	for _, r := range rows {
		if r.HeartbeatAge <= ttl {
			groups[r.Group] = append(groups[r.Group], r.ID)
		}
	}
	out := []Relay{}
	for _, r := range rows {
		if r.HeartbeatAge > ttl {
			continue
		}
		m, err := dialect.MembershipOf(groups[r.Group], r.ID)
		if err != nil {
			continue // listed above: cannot happen
		}
		out = append(out, Relay{ID: r.ID, Group: r.Group, HeartbeatAge: r.HeartbeatAge.Seconds(), Partition: m.Index,
			Partitions: m.Count, Self: self != "" && r.ID == self})
	}
	return out
}

// sourceStatus is what Config.Source reports, nil without one.
func (s *Server) sourceStatus() *SourceStatus {
	if s.cfg.Source == nil {
		return nil
	}
	ss := s.cfg.Source()
	src := &SourceStatus{Connected: ss.Connected, Standby: ss.Standby, Claims: ss.Claims, EmptyClaims: ss.EmptyClaims,
		ClaimErrors: ss.ClaimErrors, OwnedPartitions: ss.OwnedPartitions, Partitions: ss.Partitions, Pending: ss.Pending}
	if ss.HasRetained {
		src.RetainedBytes = &ss.RetainedBytes
	}
	return src
}

// Inbox is a consumer's inbox that GET /api/v1/inboxes reports on. An *inbox.Inbox (package
// inbox) has Consumer, Table and a Stats method; wrap it to return InboxStats:
//
//	type report struct{ *inbox.Inbox }
//
//	func (r report) InboxStats(ctx context.Context) (admin.InboxStats, error) {
//		st, err := r.Stats(ctx)
//		return admin.InboxStats{Processed: st.Processed, ProcessedCapped: st.ProcessedCapped,
//			LastProcessedAt: st.LastProcessedAt, DeadLetters: st.DeadLetters}, err
//	}
type Inbox interface {
	Consumer() string
	Table() string
	InboxStats(ctx context.Context) (InboxStats, error)
}

// InboxStats are an inbox's figures.
type InboxStats struct {
	Processed       int64 // processed ids kept
	ProcessedCapped bool  // Processed stopped counting at its bound
	LastProcessedAt time.Time
	DeadLetters     int64 // not retried
}

// InboxStatus is one inbox in GET /api/v1/inboxes.
type InboxStatus struct {
	Consumer        string     `json:"consumer"`
	Table           string     `json:"table"`
	Processed       int64      `json:"processed"`
	ProcessedCapped bool       `json:"processed_capped,omitempty"`
	LastProcessedAt *time.Time `json:"last_processed_at,omitempty"`
	DeadLetters     int64      `json:"dead_letters"`
	Error           string     `json:"error,omitempty"`
}

func (s *Server) inboxes(w http.ResponseWriter, r *http.Request) {
	if len(s.cfg.Inboxes) == 0 {
		writeError(w, http.StatusNotFound, "this server reports on no inbox")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	out := make([]InboxStatus, 0, len(s.cfg.Inboxes))
	for _, in := range s.cfg.Inboxes {
		st := InboxStatus{Consumer: in.Consumer(), Table: in.Table()}
		is, err := in.InboxStats(ctx)
		if err != nil {
			st.Error = err.Error()
		} else {
			st.Processed, st.ProcessedCapped, st.DeadLetters = is.Processed, is.ProcessedCapped, is.DeadLetters
			if !is.LastProcessedAt.IsZero() {
				at := is.LastProcessedAt.UTC()
				st.LastProcessedAt = &at
			}
		}
		out = append(out, st)
	}
	writeJSON(w, http.StatusOK, map[string]any{"inboxes": out})
}
