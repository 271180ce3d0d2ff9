package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
)

// notifyTables are the notification service's own tables (besides its inbox and
// notify_outbox, which their migrations create): the subscription tables, written by the
// subscription service, and the notifications.
type notifyTables struct {
	subscriptions, channels, notifications string
}

func tablesOf(st Storage) notifyTables {
	return notifyTables{st.Table("subscriptions"), st.Table("subscription_channels"), st.Table("notifications")}
}

// create creates the tables, one statement each (PostgreSQL's extended protocol takes one).
func (t notifyTables) create(ctx context.Context, db *sql.DB) error {
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS ` + t.subscriptions + ` (
  order_id        TEXT PRIMARY KEY,
  customer        TEXT NOT NULL,
  created_at      BIGINT NOT NULL,
  unsubscribed_at BIGINT
)`,
		`CREATE INDEX IF NOT EXISTS subscriptions_customer ON ` + t.subscriptions + ` (customer)`,
		`CREATE TABLE IF NOT EXISTS ` + t.channels + ` (
  order_id TEXT NOT NULL REFERENCES ` + t.subscriptions + ` (order_id),
  channel  TEXT NOT NULL,
  address  TEXT NOT NULL,
  PRIMARY KEY (order_id, channel)
)`,
		`CREATE TABLE IF NOT EXISTS ` + t.notifications + ` (
  id         TEXT PRIMARY KEY, -- the order.status event's message id
  order_id   TEXT NOT NULL,
  customer   TEXT NOT NULL,
  status     TEXT NOT NULL,
  version    BIGINT NOT NULL,
  channels   TEXT NOT NULL,    -- the channels it went to, comma-separated
  created_at BIGINT NOT NULL
)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("creating the notification tables: %w", err)
		}
	}
	return nil
}

// NotifyTable is the notification service's outbox table; the channel publishers relay it.
const NotifyTable = "notify_outbox"

// DefaultChannels are the channels customers can choose. A new channel is a name here (a
// flag, --channels) and a publisher of its own: no code of the services changes.
var DefaultChannels = []string{"sms", "email", "voice"}

// Topic is the notify_outbox topic of a channel.
func Topic(channel string) string { return "notify." + channel }

// Notification is the payload of a notify.<channel> message: what one channel sends to one
// customer.
type Notification struct {
	ID       string `json:"notification"` // the notification (the status event's id)
	Customer string `json:"customer"`
	Order    string `json:"order"`
	Status   string `json:"status"`
	Version  int    `json:"version"` // the order's version that had this status
	Channel  string `json:"channel"`
	Address  string `json:"address"`
}

// Text is the message the customer reads.
func (n *Notification) Text() string {
	return fmt.Sprintf("Your order %s is now %s (update %d).", n.Order, strings.ReplaceAll(n.Status, "_", " "), n.Version)
}

// Notifier is the notification service: it turns each order.status event, consumed through
// the inbox, into a notification and one notify_outbox message per channel the customer
// subscribed to, in the inbox's transaction.
type Notifier struct {
	channels []string
	writer   *outbox.Writer
	t        notifyTables
}

// NewNotifier returns the service for the given channels.
func NewNotifier(st Storage, channels []string) (*Notifier, error) {
	w, err := outbox.NewWriter(outbox.WriterConfig{Dialect: st.Dialect(), Table: st.Table(NotifyTable)})
	if err != nil {
		return nil, err
	}
	return &Notifier{channels: slices.Clone(channels), writer: w, t: tablesOf(st)}, nil
}

// Handle is the inbox handler for order.status events. The inbox records the event's id in
// tx, so a redelivered event is skipped and its notifications are enqueued once.
func (n *Notifier) Handle(ctx context.Context, otx outbox.Tx, m inbox.Message) error {
	tx, ok := otx.(*sql.Tx)
	if !ok {
		return fmt.Errorf("notifier: unexpected transaction %T", otx)
	}
	var ev StatusEvent
	if err := json.Unmarshal(m.Payload, &ev); err != nil {
		return fmt.Errorf("order.status %s: %w", m.ID, err)
	}
	subs, err := n.subscribedChannels(ctx, tx, ev.Order)
	if err != nil {
		return err
	}
	var msgs []outbox.Message
	var sent []string
	var customer string
	for _, nt := range subs {
		if !slices.Contains(n.channels, nt.Channel) {
			continue // a channel this deployment does not run (any more)
		}
		nt.ID, nt.Status, nt.Version = m.ID, ev.Status, ev.Version
		customer = nt.Customer
		body, err := json.Marshal(nt)
		if err != nil {
			return err
		}
		msgs = append(msgs, outbox.Message{
			Topic: Topic(nt.Channel),
			// One key per order and channel: an order's notifications reach a channel in
			// order, and a channel that is down holds back no other channel.
			Key:     ev.Order + "/" + nt.Channel,
			Payload: body,
			Headers: map[string]string{"content-type": "application/json"},
		})
		sent = append(sent, nt.Channel)
	}
	if len(msgs) == 0 {
		return nil // not subscribed (or unsubscribed): nothing to tell
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+n.t.notifications+` (id, order_id, customer, status, version, channels, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)`, m.ID, ev.Order, customer, ev.Status, ev.Version, strings.Join(sent, ","), time.Now().UnixMicro()); err != nil {
		return fmt.Errorf("storing the notification: %w", err)
	}
	return n.writer.Enqueue(ctx, tx, msgs...)
}

// subscribedChannels reads the channels and addresses of an order's active subscription.
func (n *Notifier) subscribedChannels(ctx context.Context, tx *sql.Tx, order string) ([]Notification, error) {
	rows, err := tx.QueryContext(ctx, `SELECT s.customer, c.channel, c.address
FROM `+n.t.subscriptions+` s JOIN `+n.t.channels+` c ON c.order_id = s.order_id
WHERE s.order_id = $1 AND s.unsubscribed_at IS NULL ORDER BY c.channel`, order)
	if err != nil {
		return nil, fmt.Errorf("reading the subscription: %w", err)
	}
	defer rows.Close()
	var out []Notification
	for rows.Next() {
		nt := Notification{Order: order}
		if err := rows.Scan(&nt.Customer, &nt.Channel, &nt.Address); err != nil {
			return nil, err
		}
		out = append(out, nt)
	}
	return out, rows.Err()
}

// SubscriptionService is the HTTP API customers subscribe through at order time:
//
//	POST /subscribe   {"customer": "c-1", "order": "o-1", "channels": {"sms": "+15550100", "email": "a@example.com"}}
//	POST /unsubscribe {"customer": "c-1"}                 (every order of the customer)
//	POST /unsubscribe {"customer": "c-1", "order": "o-1"} (one order)
//
// It writes the subscription tables of the notification service's database.
type SubscriptionService struct {
	db       *sql.DB
	channels []string
	t        notifyTables
}

// NewSubscriptionService returns the service accepting the given channels.
func NewSubscriptionService(st Storage, db *sql.DB, channels []string) *SubscriptionService {
	return &SubscriptionService{db: db, channels: slices.Clone(channels), t: tablesOf(st)}
}

// SubscribeRequest is the body of POST /subscribe.
type SubscribeRequest struct {
	Customer string            `json:"customer"`
	Order    string            `json:"order"`
	Channels map[string]string `json:"channels"` // channel → address
}

// UnsubscribeRequest is the body of POST /unsubscribe.
type UnsubscribeRequest struct {
	Customer string `json:"customer"`
	Order    string `json:"order,omitempty"`
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Handler returns the HTTP API.
func (s *SubscriptionService) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /subscribe", s.serveSubscribe)
	mux.HandleFunc("POST /unsubscribe", s.serveUnsubscribe)
	return mux
}

func (s *SubscriptionService) serveSubscribe(w http.ResponseWriter, r *http.Request) {
	var req SubscribeRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&req); err != nil {
		http.Error(w, "bad JSON", http.StatusBadRequest)
		return
	}
	if !idPattern.MatchString(req.Customer) || !idPattern.MatchString(req.Order) {
		http.Error(w, "customer and order must be 1 to 64 of A-Z a-z 0-9 . _ -", http.StatusBadRequest)
		return
	}
	for ch, addr := range req.Channels {
		if !slices.Contains(s.channels, ch) {
			http.Error(w, fmt.Sprintf("unknown channel %q (one of %s)", ch, strings.Join(s.channels, ", ")), http.StatusBadRequest)
			return
		}
		if addr == "" || len(addr) > 254 {
			http.Error(w, "each channel needs an address", http.StatusBadRequest)
			return
		}
	}
	if err := s.Subscribe(r.Context(), req); err != nil {
		http.Error(w, "storing the subscription failed", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// Subscribe stores (or replaces) the subscription of an order.
func (s *SubscriptionService) Subscribe(ctx context.Context, req SubscribeRequest) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+s.t.subscriptions+` (order_id, customer, created_at) VALUES ($1, $2, $3)
ON CONFLICT (order_id) DO UPDATE SET customer = excluded.customer, unsubscribed_at = NULL`, req.Order, req.Customer, time.Now().UnixMicro()); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM `+s.t.channels+` WHERE order_id = $1`, req.Order); err != nil {
		return err
	}
	for ch, addr := range req.Channels {
		if _, err := tx.ExecContext(ctx, `INSERT INTO `+s.t.channels+` (order_id, channel, address) VALUES ($1, $2, $3)`, req.Order, ch, addr); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func (s *SubscriptionService) serveUnsubscribe(w http.ResponseWriter, r *http.Request) {
	var req UnsubscribeRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&req); err != nil || !idPattern.MatchString(req.Customer) {
		http.Error(w, "bad request: {\"customer\": ..., \"order\": optional}", http.StatusBadRequest)
		return
	}
	n, err := s.Unsubscribe(r.Context(), req)
	if err != nil {
		http.Error(w, "unsubscribing failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]int64{"unsubscribed": n})
}

// Unsubscribe ends the subscriptions of a customer (of one order when req.Order is set) and
// returns how many it ended. Status changes processed after it commit notify nobody of them.
func (s *SubscriptionService) Unsubscribe(ctx context.Context, req UnsubscribeRequest) (int64, error) {
	q := `UPDATE ` + s.t.subscriptions + ` SET unsubscribed_at = $1 WHERE customer = $2 AND unsubscribed_at IS NULL`
	args := []any{time.Now().UnixMicro(), req.Customer}
	if req.Order != "" {
		q += ` AND order_id = $3`
		args = append(args, req.Order)
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
