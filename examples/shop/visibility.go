package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/listen"
)

// indexWatch is an inbox hook of the search service: it tells waiters when the event of a
// listing has been handled, so that they query the index then instead of polling it.
type indexWatch struct {
	mu      sync.Mutex
	done    map[string]time.Time     // event id → when it was handled
	waiting map[string]chan struct{} // event id → closed when handled
}

func newIndexWatch() *indexWatch {
	return &indexWatch{done: map[string]time.Time{}, waiting: map[string]chan struct{}{}}
}

// OnDelivered implements inbox.HookDelivered: it runs after the delivery's transaction.
func (w *indexWatch) OnDelivered(_ string, d *inbox.Delivery, o *inbox.Outcome, err error, _ time.Duration) {
	if err != nil || o.Result == 0 { // 0: the handler failed, to be retried
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	id := d.Message.ID
	w.done[id] = time.Now()
	if ch, ok := w.waiting[id]; ok {
		close(ch)
		delete(w.waiting, id)
	}
}

// handled returns a channel closed once event id has been handled.
func (w *indexWatch) handled(id string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch := make(chan struct{})
	if _, ok := w.done[id]; ok {
		close(ch)
		return ch
	}
	if old, ok := w.waiting[id]; ok {
		return old
	}
	w.waiting[id] = ch
	return ch
}

// handledAt returns when event id was handled.
func (w *indexWatch) handledAt(id string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.done[id]
	return t, ok
}

// visibility is the outcome of a visibility run.
type visibility struct {
	created   int
	latencies []time.Duration // creation commit → found by a search, sorted
	readMiss  int             // GETs right after the POST that did not show the listing
	samples   []sample        // per listing, in creation order
}

// sample is one listing of a visibility run.
type sample struct {
	event     string    // its event's id
	committed time.Time // when its creation committed
}

// percentile is the p-th percentile (0 ≤ p ≤ 1) of sorted ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[int(p*float64(len(ds)-1))]
}

func (v visibility) percentile(p float64) time.Duration { return percentile(v.latencies, p) }

// measureVisibility creates n listings at rate per second and waits, for each, until a
// search for its unique word finds it: the latency runs from the creation's commit to the
// search that found it. Each creation is followed by the seller's read (Get), which must
// show it. It gives up on a listing after maxWait.
func measureVisibility(ctx context.Context, inv *Inventory, s *Search, watch *indexWatch, n, rate int, maxWait time.Duration) (visibility, error) {
	var (
		mu   sync.Mutex
		v    visibility
		wg   sync.WaitGroup
		errs = make(chan error, n)
	)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for i := range n {
		if i > 0 {
			select {
			case <-ctx.Done():
				return v, ctx.Err()
			case <-tick.C:
			}
		}
		word := fmt.Sprintf("sku%012x", rand.Uint64()&0xffffffffffff)
		l, tok, err := inv.Create(ctx, Listing{Seller: "bench", Title: "Listing " + word, Description: "visibility probe " + word, PriceCents: 100})
		if err != nil {
			return v, err
		}
		committed := time.Now()
		got, ok, err := inv.Get(ctx, l.ID, listen.Token{}) // the seller's GET, on this replica: no token needed
		if err != nil {
			return v, err
		}
		mu.Lock()
		v.created++
		v.samples = append(v.samples, sample{event: tok.IDs()[0], committed: committed})
		if !ok || got.ID != l.ID {
			v.readMiss++
		}
		mu.Unlock()
		wg.Go(func() {
			d, err := awaitSearchable(ctx, s, watch.handled(tok.IDs()[0]), word, committed, maxWait)
			if err != nil {
				errs <- fmt.Errorf("listing %s: %w", l.ID, err)
				return
			}
			mu.Lock()
			v.latencies = append(v.latencies, d)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	slices.Sort(v.latencies)
	var first error
	for err := range errs {
		if first == nil {
			first = err
		}
	}
	return v, first
}

// awaitSearchable searches for word once its event was handled (and every 20 ms in case
// the hook was missed) until it is found, and returns the time since committed.
func awaitSearchable(ctx context.Context, s *Search, handled <-chan struct{}, word string, committed time.Time, maxWait time.Duration) (time.Duration, error) {
	deadline := time.NewTimer(maxWait)
	defer deadline.Stop()
	for {
		select {
		case <-handled:
			handled = nil
		case <-time.After(20 * time.Millisecond):
		case <-deadline.C:
			return 0, fmt.Errorf("not searchable after %v", maxWait)
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		hits, err := s.Find(ctx, word, 1)
		if err != nil {
			return 0, err
		}
		if len(hits) > 0 {
			return time.Since(committed), nil
		}
		if handled == nil {
			// Handled but not found: the commit is not visible yet to this connection;
			// look again shortly.
			handled = closedAfter(time.Millisecond)
		}
	}
}

func closedAfter(d time.Duration) <-chan struct{} {
	ch := make(chan struct{})
	time.AfterFunc(d, func() { close(ch) })
	return ch
}
