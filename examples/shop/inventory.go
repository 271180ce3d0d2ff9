package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/listen"
)

// Listing is an item a seller puts up for sale.
type Listing struct {
	ID          string    `json:"id"`
	Seller      string    `json:"seller"`
	Title       string    `json:"title"`
	Description string    `json:"description"`
	PriceCents  int64     `json:"price_cents"`
	CreatedAt   time.Time `json:"created_at"`
}

// Inventory is the inventory service, listening to itself: a new listing is written only
// as a listing.created event (outbox); the service's own consumer writes its listings
// table from that event, and the write-through cache serves the seller's GET until then.
type Inventory struct {
	d      *database
	in     *inbox.Inbox
	listen *listen.Service
	log    *slog.Logger
}

const inventorySchema = `CREATE TABLE IF NOT EXISTS listings (
  id      TEXT PRIMARY KEY,
  version BIGINT NOT NULL,
  seller  TEXT NOT NULL,
  title   TEXT NOT NULL,
  value   BYTEA NOT NULL)`

// NewInventory creates the service's table and inbox in d, which must have an outbox.
func NewInventory(ctx context.Context, d *database, logger *slog.Logger) (*Inventory, error) {
	schema := inventorySchema
	if d.dialect == outbox.SQLite {
		schema = `CREATE TABLE IF NOT EXISTS listings (
  id      TEXT PRIMARY KEY,
  version INTEGER NOT NULL,
  seller  TEXT NOT NULL,
  title   TEXT NOT NULL,
  value   BLOB NOT NULL)`
	}
	if err := d.exec(ctx, schema); err != nil {
		return nil, err
	}
	in, err := d.openInbox(ctx, "inventory", logger)
	if err != nil {
		return nil, err
	}
	// One cache per process (this service runs one replica); its TTL must outlast the
	// self-consumer's lag (see package listen).
	cache, err := listen.NewMemoryCache(listen.MemoryCacheConfig{TTL: 10 * time.Minute})
	if err != nil {
		return nil, err
	}
	inv := &Inventory{d: d, in: in, log: logger}
	inv.listen, err = listen.New(listen.Config{Inbox: in, Cache: cache, Writer: d.writer, Load: inv.load, LoadTx: inv.loadTx, Logger: logger})
	if err != nil {
		return nil, err
	}
	return inv, nil
}

// load reads a listing's applied state from the table: the cache's fallback.
func (inv *Inventory) load(ctx context.Context, id string) (listen.State, bool, error) {
	s := listen.State{Key: id}
	err := inv.d.db.QueryRowContext(ctx, `SELECT version, value FROM listings WHERE id = $1`, id).Scan(&s.Version, &s.Value)
	if errors.Is(err, sql.ErrNoRows) {
		return listen.State{}, false, nil
	}
	return s, err == nil, err
}

// loadTx is load inside the write's transaction: no second connection is needed.
func (inv *Inventory) loadTx(ctx context.Context, tx outbox.Tx, id string) (listen.State, bool, error) {
	stx, ok := tx.(*sql.Tx)
	if !ok {
		return listen.State{}, false, fmt.Errorf("%w: %T", outbox.ErrUnsupportedTx, tx)
	}
	s := listen.State{Key: id}
	err := stx.QueryRowContext(ctx, `SELECT version, value FROM listings WHERE id = $1`, id).Scan(&s.Version, &s.Value)
	if errors.Is(err, sql.ErrNoRows) {
		return listen.State{}, false, nil
	}
	return s, err == nil, err
}

// errListingExists is returned by Create for an id already used.
var errListingExists = errors.New("listing exists")

// Create puts a listing up: it enqueues only its listing.created event, commits, and caches
// the listing, so that Get sees it at once. The returned token names the event.
func (inv *Inventory) Create(ctx context.Context, l Listing) (Listing, listen.Token, error) {
	if l.ID == "" {
		l.ID = "listing-" + outbox.NewID().String()[24:]
	}
	l.CreatedAt = time.Now().UTC()
	body, err := json.Marshal(l)
	if err != nil {
		return Listing{}, listen.Token{}, err
	}
	tx, err := inv.d.db.BeginTx(ctx, nil)
	if err != nil {
		return Listing{}, listen.Token{}, err
	}
	p, err := inv.listen.Write(ctx, tx, l.ID, func(_ listen.State, found bool) (outbox.Message, listen.State, error) {
		if found {
			return outbox.Message{}, listen.State{}, errListingExists
		}
		return outbox.Message{Topic: topicListingCreated, Type: topicListingCreated, Payload: body,
			Headers: map[string]string{"content-type": "application/json"}}, listen.State{Value: body}, nil
	})
	if err != nil {
		_ = tx.Rollback()
		return Listing{}, listen.Token{}, err
	}
	if err := tx.Commit(); err != nil {
		return Listing{}, listen.Token{}, fmt.Errorf("committing listing %s: %w", l.ID, err)
	}
	if err := p.Committed(ctx); err != nil {
		// Committed all the same: the self-consumer will write it; until then Get may miss it.
		inv.log.WarnContext(ctx, "listing not cached", "id", l.ID, "error", err)
	}
	return l, p.Token(), nil
}

// Get reads a listing: from the cache (a listing just created there), else from the table.
// With a token (another replica's write), it waits up to 2 s for the self-consumer first.
func (inv *Inventory) Get(ctx context.Context, id string, tok listen.Token) (Listing, bool, error) {
	s, ok, err := inv.listen.ReadAfter(ctx, id, tok, 2*time.Second)
	if err != nil || !ok {
		return Listing{}, false, err
	}
	var l Listing
	if err := json.Unmarshal(s.Value, &l); err != nil {
		return Listing{}, false, fmt.Errorf("decoding listing %s: %w", id, err)
	}
	return l, true, nil
}

// applyListing writes a listing the self-consumer received into the table, unless a
// version as new is stored already.
func applyListing(ctx context.Context, tx outbox.Tx, _ inbox.Message, next listen.State) (bool, error) {
	stx, ok := tx.(*sql.Tx)
	if !ok {
		return false, fmt.Errorf("%w: %T", outbox.ErrUnsupportedTx, tx)
	}
	var l Listing
	if err := json.Unmarshal(next.Value, &l); err != nil {
		return false, fmt.Errorf("decoding listing %s: %w", next.Key, err)
	}
	res, err := stx.ExecContext(ctx, `INSERT INTO listings (id, version, seller, title, value) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE SET version = excluded.version, seller = excluded.seller, title = excluded.title, value = excluded.value
WHERE listings.version < excluded.version`, next.Key, next.Version, l.Seller, l.Title, next.Value)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// ConsumeOwn runs the self-consumer until ctx ends: the service's own listing events,
// through its inbox, into its table.
func (inv *Inventory) ConsumeOwn(ctx context.Context, natsURL string) error {
	return consume(ctx, inv.in, natsURL, topicListingCreated, inv.listen.Handler(applyListing), inv.log)
}

// InTable reports whether the table holds listing id (the self-consumer applied it).
func (inv *Inventory) InTable(ctx context.Context, id string) (bool, error) {
	var n int
	err := inv.d.db.QueryRowContext(ctx, `SELECT count(*) FROM listings WHERE id = $1`, id).Scan(&n)
	return n > 0, err
}

// TableCount is how many listings the table holds (what the self-consumer applied).
func (inv *Inventory) TableCount(ctx context.Context) (int, error) {
	var n int
	err := inv.d.db.QueryRowContext(ctx, `SELECT count(*) FROM listings`).Scan(&n)
	return n, err
}

// tokenHeader carries a write's token back to the client, who may send it on its next
// request to another replica.
const tokenHeader = "Listen-Token"

// Handler serves POST /listings {"seller", "title", "description", "price_cents"} and
// GET /listings/{id} (with the Listen-Token header of the POST, optionally).
func (inv *Inventory) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /listings", func(w http.ResponseWriter, r *http.Request) {
		var l Listing
		if err := json.NewDecoder(r.Body).Decode(&l); err != nil || l.Seller == "" || l.Title == "" || l.PriceCents <= 0 {
			http.Error(w, "want {seller, title, description, price_cents > 0}", http.StatusBadRequest)
			return
		}
		l.ID = ""
		l, tok, err := inv.Create(r.Context(), l)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set(tokenHeader, tok.String())
		writeJSON(w, http.StatusCreated, l)
	})
	mux.HandleFunc("GET /listings/{id}", func(w http.ResponseWriter, r *http.Request) {
		tok, err := listen.ParseToken(r.Header.Get(tokenHeader))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		l, ok, err := inv.Get(r.Context(), r.PathValue("id"), tok)
		switch {
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		case !ok:
			http.NotFound(w, r)
		default:
			writeJSON(w, http.StatusOK, l)
		}
	})
	return mux
}

// runInventory is the inventory subcommand: the HTTP API, the relay of its outbox and its
// self-consumer.
func runInventory(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("inventory", flag.ContinueOnError)
	var f serviceFlags
	f.register(fs, "127.0.0.1:8083", "inventory.db")
	self := fs.Bool("self-consumer", true, "apply the service's own events to its table (false: GETs are served by the cache alone)")
	d, logger, err := f.open(ctx, fs, args, "inventory", true, stderr)
	if err != nil {
		return err
	}
	defer d.close()
	inv, err := NewInventory(ctx, d, logger)
	if err != nil {
		return err
	}
	workers := []func(context.Context) error{
		func(ctx context.Context) error { return runRelay(ctx, d, f.natsURL, "shop-inventory", logger) },
	}
	if *self {
		workers = append(workers, func(ctx context.Context) error { return inv.ConsumeOwn(ctx, f.natsURL) })
	}
	return runService(ctx, stdout, "inventory", f.addr, inv.Handler(), workers...)
}
