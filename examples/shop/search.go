package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
)

// Search is the search service: it indexes every listing.created event it consumes
// through its inbox, with SQLite FTS5 or PostgreSQL full-text search.
type Search struct {
	d   *database
	in  *inbox.Inbox
	log *slog.Logger
}

var (
	// searchSchemaSQLite: an FTS5 table; the id is stored, not indexed.
	searchSchemaSQLite = []string{`CREATE VIRTUAL TABLE IF NOT EXISTS search_listings USING fts5(
  id UNINDEXED, title, description, seller, price_cents UNINDEXED)`}
	// searchSchemaPostgres: a tsvector column computed from the text, with a GIN index.
	searchSchemaPostgres = []string{`CREATE TABLE IF NOT EXISTS search_listings (
  id          TEXT PRIMARY KEY,
  title       TEXT NOT NULL,
  description TEXT NOT NULL,
  seller      TEXT NOT NULL,
  price_cents BIGINT NOT NULL,
  doc tsvector GENERATED ALWAYS AS (to_tsvector('simple', title || ' ' || description || ' ' || seller)) STORED)`,
		// fastupdate off: a new listing goes into the index itself, not into the pending list
		// that every search scans until a vacuum merges it (with 20,000 listings there, a
		// search took 12-18 ms instead of 0.05 ms).
		`CREATE INDEX IF NOT EXISTS search_listings_doc ON search_listings USING gin (doc) WITH (fastupdate = off)`,
		`ALTER INDEX search_listings_doc SET (fastupdate = off)`}
)

// NewSearch creates the index and the inbox in d. hooks are the inbox's (the benchmark
// learns there when a listing was indexed).
func NewSearch(ctx context.Context, d *database, logger *slog.Logger, hooks ...inbox.Hook) (*Search, error) {
	schema := searchSchemaPostgres
	if d.dialect == outbox.SQLite {
		schema = searchSchemaSQLite
	}
	if err := d.exec(ctx, schema...); err != nil {
		return nil, err
	}
	in, err := d.openInbox(ctx, "search", logger, hooks...)
	if err != nil {
		return nil, err
	}
	return &Search{d: d, in: in, log: logger}, nil
}

// handle indexes one listing in the inbox's transaction: the inbox drops the duplicates the
// broker redelivers, so each listing is indexed once.
func (s *Search) handle(ctx context.Context, tx outbox.Tx, m inbox.Message) error {
	stx, ok := tx.(*sql.Tx)
	if !ok {
		return fmt.Errorf("%w: %T", outbox.ErrUnsupportedTx, tx)
	}
	var l Listing
	if err := json.Unmarshal(m.Payload, &l); err != nil {
		return fmt.Errorf("decoding %s: %w", m.ID, err)
	}
	_, err := stx.ExecContext(ctx, `INSERT INTO search_listings (id, title, description, seller, price_cents) VALUES ($1, $2, $3, $4, $5)`,
		l.ID, l.Title, l.Description, l.Seller, l.PriceCents)
	return err
}

// Consume indexes the listing events until ctx ends.
func (s *Search) Consume(ctx context.Context, natsURL string) error {
	return consume(ctx, s.in, natsURL, topicListingCreated, s.handle, s.log)
}

// Hit is a search result.
type Hit struct {
	ID         string `json:"id"`
	Title      string `json:"title"`
	Seller     string `json:"seller"`
	PriceCents int64  `json:"price_cents"`
}

// Find returns up to limit listings matching every word of q.
func (s *Search) Find(ctx context.Context, q string, limit int) ([]Hit, error) {
	words := strings.Fields(q)
	if len(words) == 0 {
		return nil, nil
	}
	var query, arg string
	if s.d.dialect == outbox.SQLite {
		// Each word quoted: a phrase of one token, so FTS5 syntax in q is plain text.
		for i, w := range words {
			words[i] = `"` + strings.ReplaceAll(w, `"`, `""`) + `"`
		}
		query = `SELECT id, title, seller, price_cents FROM search_listings WHERE search_listings MATCH $1 ORDER BY rank LIMIT $2`
		arg = strings.Join(words, " ")
	} else {
		query = `SELECT id, title, seller, price_cents FROM search_listings WHERE doc @@ plainto_tsquery('simple', $1)
ORDER BY ts_rank(doc, plainto_tsquery('simple', $1)) DESC LIMIT $2`
		arg = q
	}
	rows, err := s.d.db.QueryContext(ctx, query, arg, limit)
	if err != nil {
		return nil, fmt.Errorf("searching: %w", err)
	}
	defer rows.Close()
	hits := []Hit{}
	for rows.Next() {
		var h Hit
		if err := rows.Scan(&h.ID, &h.Title, &h.Seller, &h.PriceCents); err != nil {
			return nil, err
		}
		hits = append(hits, h)
	}
	return hits, rows.Err()
}

// Count is how many listings are indexed.
func (s *Search) Count(ctx context.Context) (int, error) {
	var n int
	err := s.d.db.QueryRowContext(ctx, `SELECT count(*) FROM search_listings`).Scan(&n)
	return n, err
}

// Handler serves GET /search?q=words&limit=n.
func (s *Search) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /search", func(w http.ResponseWriter, r *http.Request) {
		limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
		if err != nil || limit < 1 || limit > 100 {
			limit = 20
		}
		hits, err := s.Find(r.Context(), r.URL.Query().Get("q"), limit)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, http.StatusOK, hits)
	})
	return mux
}

// runSearch is the search subcommand: the HTTP API and the consumer of listing events.
func runSearch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("search", flag.ContinueOnError)
	var f serviceFlags
	f.register(fs, "127.0.0.1:8084", "search.db")
	d, logger, err := f.open(ctx, fs, args, "search", false, stderr)
	if err != nil {
		return err
	}
	defer d.close()
	s, err := NewSearch(ctx, d, logger)
	if err != nil {
		return err
	}
	return runService(ctx, stdout, "search", f.addr, s.Handler(), func(ctx context.Context) error { return s.Consume(ctx, f.natsURL) })
}
