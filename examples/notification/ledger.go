package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Ledger is what the customers were promised: each order's channels and addresses, each
// status version the order service committed, and when a customer unsubscribed. Check
// compares it with what the providers received.
type Ledger struct {
	mu       sync.Mutex
	subs     map[string]map[string]string // order → channel → address
	versions map[string]int               // order → last committed version
	unsubAt  map[string]int               // order → last version committed before the unsubscribe
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger {
	return &Ledger{subs: map[string]map[string]string{}, versions: map[string]int{}, unsubAt: map[string]int{}}
}

// Subscribed records an order's subscription.
func (l *Ledger) Subscribed(order string, channels map[string]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := make(map[string]string, len(channels))
	for k, v := range channels {
		c[k] = v
	}
	l.subs[order] = c
}

// Committed records a status version the order service committed.
func (l *Ledger) Committed(order string, version int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.versions[order] = max(l.versions[order], version)
}

// Unsubscribed records that the order's subscription ended (the call returned): versions
// committed after it must notify nobody.
func (l *Ledger) Unsubscribed(order string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.unsubAt[order]; !ok {
		l.unsubAt[order] = l.versions[order]
	}
}

// Ref is the reference a notification carries to the providers: order#version.
func Ref(order string, version int) string { return order + "#" + strconv.Itoa(version) }

// Report is the comparison of the ledger with the deliveries.
type Report struct {
	Expected  int // deliveries owed: versions × subscribed channels, unsubscribes aside
	Delivered int // distinct deliveries, all channels
	Optional  int // deliveries of versions committed before a mid-run unsubscribe (allowed, not owed)
	Missing   int // owed and not delivered
	Doubles   int // a second distinct message for the same order, version and channel
	Unwanted  int // a channel not chosen, a wrong address, or after the unsubscribe
	Problems  []string
}

// OK reports whether every owed notification arrived once and nothing else did.
func (r Report) OK() bool { return r.Missing == 0 && r.Doubles == 0 && r.Unwanted == 0 }

func (r *Report) problem(format string, args ...any) {
	if len(r.Problems) < 10 {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Check compares the ledger with the deliveries of every channel.
func (l *Ledger) Check(deliveries []Delivery) Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	var r Report
	seen := map[string]int{} // ref + "/" + channel → count
	for _, d := range deliveries {
		r.Delivered++
		order, version, ok := parseRef(d.Ref)
		if !ok {
			r.Unwanted++
			r.problem("%s: delivery %s without a reference", d.Channel, d.Key)
			continue
		}
		k := d.Ref + "/" + d.Channel
		if seen[k]++; seen[k] > 1 {
			r.Doubles++
			r.problem("%s: %s delivered %d times (distinct message ids)", d.Channel, d.Ref, seen[k])
		}
		addr, chosen := l.subs[order][d.Channel]
		at, unsub := l.unsubAt[order]
		switch {
		case !chosen:
			r.Unwanted++
			r.problem("%s: %s went to a channel the customer did not choose", d.Channel, d.Ref)
		case addr != d.To:
			r.Unwanted++
			r.problem("%s: %s went to %q, not %q", d.Channel, d.Ref, d.To, addr)
		case version < 1 || version > l.versions[order]:
			r.Unwanted++
			r.problem("%s: %s is a status the order service never committed", d.Channel, d.Ref)
		case unsub && version > at:
			r.Unwanted++
			r.problem("%s: %s arrived although the customer unsubscribed at version %d", d.Channel, d.Ref, at)
		case unsub:
			r.Optional++
		}
	}
	orders := make([]string, 0, len(l.subs))
	for o := range l.subs {
		orders = append(orders, o)
	}
	sort.Strings(orders)
	for _, o := range orders {
		_, unsub := l.unsubAt[o]
		if unsub {
			continue // before the unsubscribe: may or may not have been processed in time
		}
		for v := 1; v <= l.versions[o]; v++ {
			for ch := range l.subs[o] {
				r.Expected++
				if seen[Ref(o, v)+"/"+ch] == 0 {
					r.Missing++
					r.problem("%s: %s never arrived", ch, Ref(o, v))
				}
			}
		}
	}
	return r
}

func parseRef(ref string) (string, int, bool) {
	i := strings.LastIndexByte(ref, '#')
	if i < 0 {
		return "", 0, false
	}
	v, err := strconv.Atoi(ref[i+1:])
	return ref[:i], v, err == nil
}
