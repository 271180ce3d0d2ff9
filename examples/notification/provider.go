package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Provider is a stand-in for an SMS or voice provider's HTTP API, on loopback. It accepts
// POST /v1/messages with a JSON body {"to": ..., "body": ..., "reference": ...} and an Idempotency-Key header,
// and records each message once per key: a request repeating a key it already accepted is
// answered 200 with "Idempotent-Replayed: true" and counted as a duplicate, as real providers
// (Twilio, Stripe-style APIs) do. It fails on demand (SetFaults, SetOutage).
type Provider struct {
	name string
	srv  *http.Server
	ln   net.Listener

	mu         sync.Mutex
	byKey      map[string]Delivery
	acked      map[string]bool // keys whose first request was answered 201
	order      []string        // keys in arrival order
	duplicates int
	afterAck   int // duplicates of a message whose first request was answered 201
	requests   int
	faults     Faults
	outage     bool
	rng        *rand.Rand
	onDeliver  func(Delivery)
}

// Delivery is one message a channel's provider accepted.
type Delivery struct {
	Channel string
	Key     string // the Idempotency-Key (SMTP: Message-ID): the outbox message id
	Ref     string // order#version, the notification's reference
	To      string
	Body    string
	At      time.Time
}

// Faults are the provider's failures on demand, as fractions of requests (0 to 1).
type Faults struct {
	// Before500 answers 500 without recording the message (a retry must send it).
	Before500 float64
	// After500 records the message, then answers 500: the ack is lost, the retry is a
	// duplicate the provider dedupes.
	After500 float64
	// TooMany answers 429 with Retry-After: 1 without recording.
	TooMany float64
}

// StartProvider starts a provider stand-in named name on 127.0.0.1 (a free port).
func StartProvider(name string) (*Provider, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") //nolint:noctx // a loopback listener for the stand-in
	if err != nil {
		return nil, fmt.Errorf("provider %s: %w", name, err)
	}
	p := &Provider{name: name, ln: ln, byKey: map[string]Delivery{}, acked: map[string]bool{}, rng: rand.New(rand.NewPCG(rand.Uint64(), 1))}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", p.serveMessage)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// URL is the provider's base URL.
func (p *Provider) URL() string { return "http://" + p.ln.Addr().String() }

// Close stops the provider.
func (p *Provider) Close() error { return p.srv.Close() }

// SetFaults sets the fraction of requests that fail, and how.
func (p *Provider) SetFaults(f Faults) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = f
}

// SetOutage makes every request fail with 503 while on.
func (p *Provider) SetOutage(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.outage = on
}

// OnDeliver sets a function called with each newly accepted message (not the duplicates).
func (p *Provider) OnDeliver(f func(Delivery)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onDeliver = f
}

// Deliveries returns the accepted messages, one per key, in arrival order.
func (p *Provider) Deliveries() []Delivery {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Delivery, 0, len(p.order))
	for _, k := range p.order {
		out = append(out, p.byKey[k])
	}
	return out
}

// Stats returns the counts of accepted messages, deduped duplicates and requests.
func (p *Provider) Stats() ChannelStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ChannelStats{Channel: p.name, Delivered: len(p.order), Duplicates: p.duplicates, AfterAck: p.afterAck, Requests: p.requests}
}

// providerRequest is the provider API's request body.
type providerRequest struct {
	To        string `json:"to"`
	Body      string `json:"body"`
	Reference string `json:"reference,omitempty"` // the client's reference, echoed in reports
}

func (p *Provider) serveMessage(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.requests++
	p.mu.Unlock()
	key := r.Header.Get("Idempotency-Key")
	var req providerRequest
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req)
	switch {
	case key == "":
		http.Error(w, `{"error":"Idempotency-Key required"}`, http.StatusBadRequest)
		return
	case err != nil:
		http.Error(w, `{"error":"bad JSON"}`, http.StatusBadRequest)
		return
	case !validAddress(p.name, req.To):
		http.Error(w, `{"error":"invalid recipient"}`, http.StatusUnprocessableEntity)
		return
	}

	p.mu.Lock()
	if p.outage {
		p.mu.Unlock()
		http.Error(w, `{"error":"maintenance"}`, http.StatusServiceUnavailable)
		return
	}
	if _, ok := p.byKey[key]; ok {
		p.duplicates++
		if p.acked[key] {
			p.afterAck++
		}
		p.mu.Unlock()
		w.Header().Set("Idempotent-Replayed", "true")
		w.WriteHeader(http.StatusOK)
		return
	}
	roll := p.rng.Float64()
	f := p.faults
	switch {
	case roll < f.TooMany:
		p.mu.Unlock()
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"error":"slow down"}`, http.StatusTooManyRequests)
		return
	case roll < f.TooMany+f.Before500:
		p.mu.Unlock()
		http.Error(w, `{"error":"internal"}`, http.StatusInternalServerError)
		return
	}
	d := Delivery{Channel: p.name, Key: key, Ref: req.Reference, To: req.To, Body: req.Body, At: time.Now()}
	p.byKey[key] = d
	p.order = append(p.order, key)
	onDeliver := p.onDeliver
	lost := roll < f.TooMany+f.Before500+f.After500
	p.acked[key] = !lost
	p.mu.Unlock()
	if onDeliver != nil {
		onDeliver(d)
	}
	if lost {
		http.Error(w, `{"error":"internal"}`, http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// validAddress is the provider's check of a recipient: a phone number for sms and voice.
func validAddress(channel, to string) bool {
	switch channel {
	case "sms", "voice":
		return strings.HasPrefix(to, "+") && len(to) >= 8
	default:
		return to != ""
	}
}

// ChannelStats is what a channel's provider (or SMTP server) saw.
type ChannelStats struct {
	Channel    string
	Delivered  int // distinct messages accepted
	Duplicates int // repeats of an accepted message, deduped by its id
	// AfterAck counts the duplicates of messages whose first request was answered with
	// success (HTTP providers only): resends by a publisher that died before it recorded
	// the delivery, not retries of a lost answer.
	AfterAck int
	Requests int // requests or SMTP transactions, duplicates and failures included
}
