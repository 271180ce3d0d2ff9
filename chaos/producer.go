package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/relay"
)

// outboxTopic is the topic of every message: subject chaos.events, Kafka topic chaos.events,
// routing key events.
const outboxTopic = "events"

// producers commit business rows and their messages, like a service would: each transaction
// inserts one row per message into the business table and enqueues the messages. Every
// producer owns a disjoint set of keys and runs one transaction at a time, so transactions on
// a key never overlap and the key's sequence numbers follow commit order.
type producers struct {
	cfg    *Config
	db     database // straight to the server, not through the relays' fault proxy
	ledger *ledger
	budget atomic.Int64 // messages still allowed (Config.Messages); unlimited when negative

	lastErr atomic.Pointer[error]
	errs    atomic.Int64
}

// run produces until ctx ends or the budget is spent.
func (p *producers) run(ctx context.Context) {
	if p.cfg.Messages > 0 {
		p.budget.Store(int64(p.cfg.Messages))
	} else {
		p.budget.Store(-1)
	}
	var wg sync.WaitGroup
	for i := range p.cfg.Producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.produce(ctx, i)
		}()
	}
	wg.Wait()
}

// take reserves n messages of the budget; false when it is spent.
func (p *producers) take(n int) bool {
	for {
		b := p.budget.Load()
		if b < 0 {
			return true
		}
		if b < int64(n) {
			return false
		}
		if p.budget.CompareAndSwap(b, b-int64(n)) {
			return true
		}
	}
}

func (p *producers) produce(ctx context.Context, id int) {
	rng := rand.New(rand.NewPCG(p.cfg.Seed, uint64(id)+1))
	var keys []int
	for k := id; k < p.cfg.Keys; k += p.cfg.Producers {
		keys = append(keys, k)
	}
	next := make(map[int]int, len(keys)) // key → next sequence number
	perMsg := time.Duration(float64(time.Second) * float64(p.cfg.Producers) / float64(p.cfg.Rate))
	due := time.Now()
	for ctx.Err() == nil {
		n := 1 + rng.IntN(p.cfg.TxMessages)
		if !p.take(n) {
			return
		}
		rollback := rng.Float64() < p.cfg.RollbackRatio
		primary := keys[rng.IntN(len(keys))]
		es := make([]entry, n)
		for i := range es {
			k := primary
			if rng.IntN(10) < 3 {
				k = keys[rng.IntN(len(keys))]
			}
			seq := -1
			if !rollback {
				seq = next[k]
				next[k]++
			}
			es[i] = entry{id: outbox.NewID(), key: int32(k), seq: int32(seq), txStart: i == 0}
		}
		first := p.ledger.add(es)
		state, at := p.transact(ctx, first, es, rollback)
		p.ledger.settle(first, n, state, at)
		if state == stateAborted || state == stateUncertain {
			// The database is away (a PostgreSQL restart): don't spin.
			_ = relay.Sleep(ctx, 100*time.Millisecond)
		}
		due = due.Add(time.Duration(n) * perMsg)
		if now := time.Now(); due.Before(now.Add(-time.Second)) {
			due = now // far behind (an outage): don't burst to catch up
		}
		_ = relay.Sleep(ctx, time.Until(due))
	}
}

// transact runs one business transaction and returns how it ended and when.
func (p *producers) transact(ctx context.Context, first int, es []entry, rollback bool) (uint8, time.Time) {
	// The transaction must not be cut short by the end of the phase: a COMMIT cancelled in
	// flight has an unknown outcome.
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	o := orders{
		idx:  make([]int64, len(es)),
		ids:  make([]string, len(es)),
		keys: make([]string, len(es)),
		seqs: make([]int32, len(es)),
	}
	msgs := make([]outbox.Message, len(es))
	for i, e := range es {
		o.idx[i] = int64(first + i)
		o.ids[i] = e.id.String()
		o.keys[i] = keyName(int(e.key))
		o.seqs[i] = e.seq
		msgs[i] = outbox.Message{
			ID:      e.id,
			Topic:   outboxTopic,
			Key:     o.keys[i],
			Type:    "chaos.event",
			Payload: makePayload(first+i, int(e.key), int(e.seq), rollback, p.cfg.PayloadBytes),
		}
	}
	tx, err := p.db.begin(tctx)
	if err != nil {
		p.fail(err)
		return stateAborted, time.Now()
	}
	if err := tx.write(tctx, o, msgs); err != nil {
		_ = tx.rollback(tctx)
		p.fail(err)
		return stateAborted, time.Now()
	}
	if rollback {
		if err := tx.rollback(tctx); err != nil {
			p.fail(err)
		}
		return stateRolledBack, time.Now()
	}
	if err := tx.commit(tctx); err != nil {
		p.fail(fmt.Errorf("commit: %w", err))
		return stateUncertain, time.Now()
	}
	return stateCommitted, time.Now()
}

func (p *producers) fail(err error) {
	p.errs.Add(1)
	p.lastErr.Store(&err)
}
