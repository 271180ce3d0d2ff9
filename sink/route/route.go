// Package route sends each message to the sink its topic is routed to, so one relay can serve
// several brokers: orders.* to Kafka, notify.sms to an SMS provider's webhook.
//
// Patterns are dot-separated like topics. A "*" token matches exactly one token, a final ">"
// matches one or more tokens, anything else matches itself: "orders.*" matches
// "orders.created" but not "orders.created.v2", which "orders.>" matches. Routes are tried in
// order and the first match wins. A message whose topic matches no route fails permanently
// (it goes to the dead-letter table with the reason), unless a Default sink is set.
//
// A batch is split by destination and the parts are published concurrently, so a slow sink
// does not hold up the others within a Publish call; a sink that is down fails only its own
// messages, which retry with backoff while the other topics flow. For full isolation (a sink
// down for long, or separate scaling), run one relay per channel with a topic filter.
package route

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
)

// ErrNoRoute is wrapped (as a permanent error) for a topic that matches no route.
var ErrNoRoute = errors.New("no route for topic")

// Route sends topics matching Pattern to Sink.
type Route struct {
	Pattern string
	// Name identifies the sink in errors and logs (e.g. "kafka", "sms-provider").
	Name string
	Sink sink.Sink
}

// Router is a sink.Sink that dispatches to other sinks by topic.
type Router struct {
	routes   []compiled
	fallback *compiled
	mu       sync.RWMutex
	cache    map[string]*compiled // topic → route (nil: no route); bounded by maxCached
}

// maxCached bounds the lookup cache, whatever topics the table holds.
const maxCached = 4096

type compiled struct {
	Route
	tokens []string
}

var (
	_ sink.Sink         = (*Router)(nil)
	_ sink.Destinations = (*Router)(nil)
)

// New validates the routes and returns a Router. def, when not nil, receives topics that
// match no route.
func New(routes []Route, def *Route) (*Router, error) {
	r := &Router{cache: map[string]*compiled{}}
	for i, rt := range routes {
		if rt.Sink == nil {
			return nil, &outbox.ConfigError{Field: fmt.Sprintf("routes[%d].sink", i), Reason: "required"}
		}
		toks, err := parse(rt.Pattern)
		if err != nil {
			return nil, &outbox.ConfigError{Field: fmt.Sprintf("routes[%d].topic", i), Reason: err.Error()}
		}
		r.routes = append(r.routes, compiled{Route: rt, tokens: toks})
	}
	if def != nil {
		if def.Sink == nil {
			return nil, &outbox.ConfigError{Field: "default sink", Reason: "required"}
		}
		r.fallback = &compiled{Route: *def}
	}
	if len(r.routes) == 0 && r.fallback == nil {
		return nil, &outbox.ConfigError{Field: "routes", Reason: "at least one route or a default sink is required"}
	}
	return r, nil
}

func parse(pattern string) ([]string, error) {
	if pattern == "" {
		return nil, errors.New("empty pattern")
	}
	toks := strings.Split(pattern, ".")
	for i, t := range toks {
		switch {
		case t == "":
			return nil, fmt.Errorf("pattern %q has an empty token", pattern)
		case t == ">" && i != len(toks)-1:
			return nil, fmt.Errorf("pattern %q: \">\" must be the last token", pattern)
		case t != "*" && t != ">" && strings.ContainsAny(t, "*>"):
			return nil, fmt.Errorf("pattern %q: wildcards must be whole tokens", pattern)
		}
	}
	return toks, nil
}

// Match reports whether topic matches pattern (which must be valid).
func Match(pattern, topic string) bool {
	toks, err := parse(pattern)
	return err == nil && match(toks, topic)
}

func match(toks []string, topic string) bool {
	for i, t := range toks {
		if t == ">" {
			return topic != ""
		}
		head, rest, more := strings.Cut(topic, ".")
		if head == "" || (t != "*" && t != head) {
			return false
		}
		if !more {
			return i == len(toks)-1
		}
		topic = rest
	}
	return false
}

// lookup returns the route for topic, or nil.
func (r *Router) lookup(topic string) *compiled {
	r.mu.RLock()
	found, ok := r.cache[topic]
	r.mu.RUnlock()
	if ok {
		return found
	}
	for i := range r.routes {
		if match(r.routes[i].tokens, topic) {
			found = &r.routes[i]
			break
		}
	}
	if found == nil {
		found = r.fallback
	}
	r.mu.Lock()
	if len(r.cache) < maxCached {
		r.cache[topic] = found
	}
	r.mu.Unlock()
	return found
}

// Publish implements sink.Sink: the batch is split by destination, each part published
// concurrently, in slice order within a part.
func (r *Router) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	res := make([]error, len(msgs))
	type part struct {
		route *compiled
		msgs  []*outbox.Record
		index []int
	}
	var parts []*part
	byRoute := map[*compiled]*part{}
	for i, m := range msgs {
		rt := r.lookup(m.Topic)
		if rt == nil {
			res[i] = sink.Permanent(fmt.Errorf("%w %q", ErrNoRoute, m.Topic))
			continue
		}
		p := byRoute[rt]
		if p == nil {
			p = &part{route: rt}
			byRoute[rt] = p
			parts = append(parts, p)
		}
		p.msgs = append(p.msgs, m)
		p.index = append(p.index, i)
	}
	publish := func(p *part) {
		out := p.route.Sink.Publish(ctx, p.msgs)
		for j, i := range p.index {
			var err error
			if j < len(out) {
				err = out[j]
			} else {
				err = fmt.Errorf("sink %q returned %d results for %d messages", p.route.Name, len(out), len(p.msgs))
			}
			if err != nil && p.route.Name != "" {
				err = fmt.Errorf("sink %s: %w", p.route.Name, err)
			}
			res[i] = err
		}
	}
	if len(parts) == 1 {
		publish(parts[0])
		return res
	}
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Go(func() { publish(p) })
	}
	wg.Wait()
	return res
}

// Close closes every distinct sink once and joins their errors.
func (r *Router) Close() error {
	seen := map[sink.Sink]bool{}
	var errs []error
	closeOnce := func(c *compiled) {
		if c == nil || seen[c.Sink] {
			return
		}
		seen[c.Sink] = true
		if err := c.Sink.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing sink %s: %w", c.Name, err))
		}
	}
	for i := range r.routes {
		closeOnce(&r.routes[i])
	}
	closeOnce(r.fallback)
	return errors.Join(errs...)
}

// Destination implements sink.Destinations: the name of the route topic goes to ("" for the
// default sink or no route), so the relay can pause one unavailable destination while the
// others flow.
func (r *Router) Destination(topic string) string {
	if rt := r.lookup(topic); rt != nil {
		if rt.Name != "" {
			return rt.Name
		}
		return rt.Pattern
	}
	return ""
}
