package dialecttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
)

// testConcurrent runs producers and the workers of two relays together, a tenth of the
// messages failing once: every message is published once, in order per key.
func testConcurrent(t *testing.T, s dialect.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const (
		producers   = 4
		perProducer = 150
		relays      = 2
		workers     = 2
	)
	var (
		mu        sync.Mutex
		published = map[string][]int{} // key → message numbers in publish order
		count     int
	)
	var prodWG sync.WaitGroup
	for p := range producers {
		prodWG.Go(func() {
			// Each producer owns its keys, so its commit order is the order to check.
			for i := 0; i < perProducer; i += 3 {
				var batch []outbox.Message
				for j := i; j < i+3; j++ {
					batch = append(batch, msg(fmt.Sprintf("p%d-k%d", p, j%5), j))
				}
				if err := s.Enqueue(ctx, batch...); err != nil {
					t.Errorf("enqueue: %v", err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	var workWG sync.WaitGroup
	for w := range relays * workers {
		workWG.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			req := dialect.ClaimRequest{Limit: 20, Partition: w / workers, Partitions: relays, Slot: w % workers, Slots: workers}
			for {
				select {
				case <-done:
					return
				default:
				}
				c, err := s.Claim(ctx, req)
				if err != nil {
					t.Errorf("claim: %v", err)
					return
				}
				var o outbox.Outcome
				failed := map[string]bool{}
				mu.Lock()
				for _, r := range c.Records() {
					switch {
					case failed[r.Key]:
						// released: a later message never overtakes a failed one
					case rng.IntN(10) == 0:
						failed[r.Key] = true
						o.Retry = append(o.Retry, outbox.Retry{Seq: r.Seq, Delay: time.Millisecond, Error: "flaky"})
					default:
						n, _ := strconv.Atoi(r.Headers["n"])
						published[r.Key] = append(published[r.Key], n)
						count++
						o.Published = append(o.Published, r.Seq)
					}
				}
				mu.Unlock()
				if err := c.Finish(ctx, o); err != nil {
					t.Errorf("finish: %v", err)
					return
				}
				if len(c.Records()) == 0 {
					time.Sleep(2 * time.Millisecond) // idle poll
				}
			}
		})
	}
	prodWG.Wait()
	deadline := time.Now().Add(40 * time.Second)
	for {
		mu.Lock()
		n := count
		mu.Unlock()
		if n >= producers*perProducer || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(done)
	workWG.Wait()
	if count != producers*perProducer {
		t.Fatalf("published %d messages, want %d", count, producers*perProducer)
	}
	for key, ns := range published {
		if !slices.IsSorted(ns) || len(slices.Compact(slices.Clone(ns))) != len(ns) {
			t.Errorf("key %s published out of order or twice: %v", key, ns)
		}
	}
	if st, err := s.Stats(ctx); err != nil || st.Pending != 0 {
		t.Fatalf("Stats = %+v, %v; want nothing pending", st, err)
	}
}
