package redisinbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/inbox/internal/keyorder"
)

// entry is a stream entry's address.
type entry struct{ stream, id string }

// scheduled is an entry awaiting its retry: left pending, claimed back (XCLAIM with a
// min-idle time) once due.
type scheduled struct {
	it         *keyorder.Item[entry]
	due, since time.Time // since: when it was last delivered to this consumer, at the latest
}

// consumer is one Run's consuming state.
type consumer struct {
	a   *Adapter
	rdb goredis.UniversalClient
	seq *keyorder.Sequencer[entry]

	known     map[string]bool // entries this consumer holds: queued, held, being delivered, scheduled
	sched     map[string]*scheduled
	backlog   map[string]string // stream -> last id read of this consumer's own pending entries ("0" first)
	lastClaim time.Time
	answered  bool // Redis answered once (credentials accepted)
}

func (c *consumer) run(ctx context.Context) error {
	backoff := time.Second
	ready := false
	for ctx.Err() == nil {
		var err error
		if !ready {
			if err = c.setup(ctx); err == nil {
				ready = true
			}
		}
		if err == nil {
			err = c.round(ctx)
		}
		if err == nil {
			backoff = time.Second
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if isAuthErr(err) && !c.answered {
			return fmt.Errorf("%w: %w", ErrAuth, err)
		}
		if strings.HasPrefix(err.Error(), "NOGROUP") {
			ready = false // the stream or the group was deleted: create them again
		}
		c.a.log.WarnContext(ctx, "redisinbox: Redis failed; retrying", "group", c.a.cfg.Group, "in", backoff, "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
	return nil
}

// setup creates the group on every stream (and the stream, MKSTREAM) when absent, and
// starts reading this consumer's own pending entries (a restart's unfinished work).
func (c *consumer) setup(ctx context.Context) error {
	for _, k := range c.a.keys {
		err := c.rdb.XGroupCreateMkStream(ctx, k, c.a.cfg.Group, "0").Err()
		if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
			return fmt.Errorf("redisinbox: creating group %s on %s: %w", c.a.cfg.Group, k, err)
		}
		c.answered = true
	}
	c.backlog = make(map[string]string, len(c.a.keys))
	for _, k := range c.a.keys {
		c.backlog[k] = "0"
	}
	return nil
}

// round claims the due retries and stale entries, reads new entries, and delivers one
// batch.
func (c *consumer) round(ctx context.Context) error {
	cfg := c.a.cfg
	now := time.Now()
	if err := c.claimDue(ctx, now); err != nil {
		return err
	}
	if now.Sub(c.lastClaim) >= cfg.ClaimMinIdle/2 {
		if err := c.claimStale(ctx); err != nil {
			return err
		}
		c.lastClaim = now
	}
	if c.seq.Queued() < cfg.Batch {
		if err := c.read(ctx, now); err != nil {
			return err
		}
	}
	c.seq.Expire(ctx, now)
	_, err := c.seq.Step(ctx)
	return err
}

// claimDue takes back the entries whose retry is due: XCLAIM with a min-idle time of the
// delay, so that an entry another consumer took meanwhile stays with it.
func (c *consumer) claimDue(ctx context.Context, now time.Time) error {
	for ref, s := range c.sched {
		if now.Before(s.due) {
			continue
		}
		e := s.it.Handle
		msgs, err := c.rdb.XClaim(ctx, &goredis.XClaimArgs{Stream: e.stream, Group: c.a.cfg.Group, Consumer: c.a.cfg.Consumer,
			MinIdle: max(s.due.Sub(s.since)-10*time.Millisecond, 0), Messages: []string{e.id}}).Result()
		if err != nil && !errors.Is(err, goredis.Nil) {
			return fmt.Errorf("redisinbox: claiming %s for its retry: %w", s.it.RejectID, err)
		}
		delete(c.sched, ref)
		if len(msgs) == 1 && msgs[0].ID == e.id && msgs[0].Values != nil {
			c.seq.Add(c.decode(e.stream, msgs[0], true))
			continue
		}
		// Taken by another consumer (or deleted from the stream): its key goes on here.
		delete(c.known, ref)
		c.a.log.InfoContext(ctx, "redisinbox: a retried entry was not there to claim back", "message", s.it.RejectID)
		c.seq.ReleaseRef(ref)
	}
	return nil
}

// claimStale takes over the entries pending for longer than ClaimMinIdle with any
// consumer of the group (a dead one's), with XAUTOCLAIM. Entries this consumer holds
// itself are left as they are.
func (c *consumer) claimStale(ctx context.Context) error {
	cfg := c.a.cfg
	for _, k := range c.a.keys {
		start := "0-0"
		for range 100 { // at most 10,000 entries a round
			msgs, next, err := c.rdb.XAutoClaim(ctx, &goredis.XAutoClaimArgs{Stream: k, Group: cfg.Group, Consumer: cfg.Consumer,
				MinIdle: cfg.ClaimMinIdle, Start: start, Count: 100}).Result()
			if err != nil && !errors.Is(err, goredis.Nil) {
				return fmt.Errorf("redisinbox: claiming stale entries of %s: %w", k, err)
			}
			for _, m := range msgs {
				ref := k + "/" + m.ID
				if c.known[ref] {
					if s := c.sched[ref]; s != nil {
						s.since = time.Now() // the claim reset its idle time
					}
					continue
				}
				c.arrive(k, m, true)
			}
			if next == "0-0" || next == "" {
				break
			}
			start = next
		}
	}
	return nil
}

// read reads this consumer's own pending entries first (after a start), then new ones.
func (c *consumer) read(ctx context.Context, now time.Time) error {
	cfg := c.a.cfg
	count := int64(cfg.Batch - c.seq.Queued())
	streams := make([]string, 0, 2*len(c.a.keys))
	ids := make([]string, 0, len(c.a.keys))
	own := false
	for _, k := range c.a.keys {
		streams = append(streams, k)
		if id, ok := c.backlog[k]; ok {
			ids = append(ids, id)
			own = true
		} else {
			ids = append(ids, ">")
		}
	}
	streams = append(streams, ids...)
	block := time.Duration(-1) // no BLOCK: there is work queued, or own pending entries to read
	if !own && c.seq.Queued() == 0 {
		block = cfg.Block
		for _, s := range c.sched {
			block = min(block, time.Until(s.due))
		}
		if next := c.seq.Expire(ctx, now); !next.IsZero() {
			block = min(block, time.Until(next))
		}
		block = min(block, time.Until(c.lastClaim.Add(cfg.ClaimMinIdle/2)))
		block = max(block, time.Millisecond) // BLOCK 0 would wait forever
	}
	res, err := c.rdb.XReadGroup(ctx, &goredis.XReadGroupArgs{Group: cfg.Group, Consumer: cfg.Consumer, Streams: streams,
		Count: max(count, 1), Block: block}).Result()
	if errors.Is(err, goredis.Nil) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("redisinbox: reading: %w", err)
	}
	c.answered = true
	got := map[string]int{}
	for _, s := range res {
		_, fromOwn := c.backlog[s.Stream]
		for _, m := range s.Messages {
			got[s.Stream]++
			if fromOwn {
				c.backlog[s.Stream] = m.ID
				if m.Values == nil { // deleted from the stream while pending: nothing to deliver
					_ = c.rdb.XAck(ctx, s.Stream, cfg.Group, m.ID).Err()
					continue
				}
				if c.known[s.Stream+"/"+m.ID] {
					continue
				}
			}
			c.arrive(s.Stream, m, fromOwn)
		}
	}
	for k := range c.backlog {
		if got[k] == 0 {
			delete(c.backlog, k) // own pending entries all read: new ones from now on
		}
	}
	return nil
}

func (c *consumer) arrive(stream string, m goredis.XMessage, redelivered bool) {
	it := c.decode(stream, m, redelivered)
	c.known[it.Ref] = true
	c.seq.Add(it)
}

// decode reads an entry in the sink's field layout: the CloudEvents attributes by name,
// h:<name> user headers, data the payload.
func (c *consumer) decode(stream string, m goredis.XMessage, redelivered bool) *keyorder.Item[entry] {
	it := &keyorder.Item[entry]{Ref: stream + "/" + m.ID, RejectID: "redis:" + stream + ":" + m.ID, Handle: entry{stream, m.ID}}
	it.Delivery.Redelivered = redelivered
	env := inbox.Envelope{Topic: c.a.topics[stream], Attributes: make(map[string]string, 8)}
	hasData := false
	for k, v := range m.Values {
		s, ok := v.(string)
		if !ok {
			s = fmt.Sprint(v)
		}
		switch {
		case k == "data":
			env.Payload, hasData = []byte(s), true
		case strings.HasPrefix(k, "h:"):
			if env.Headers == nil {
				env.Headers = make(map[string]string)
			}
			env.Headers[k[2:]] = s
		default:
			env.Attributes[k] = s
		}
	}
	msg, err := env.Message()
	if err == nil && !hasData {
		err = fmt.Errorf("%w: no data field", inbox.ErrInvalidMessage)
	}
	it.Delivery.Message, it.Bad = msg, err
	return it
}

// Ack acknowledges its with XACK, one per stream, pipelined.
func (c *consumer) Ack(ctx context.Context, its []*keyorder.Item[entry]) {
	byStream := map[string][]string{}
	for _, it := range its {
		delete(c.known, it.Ref)
		byStream[it.Handle.stream] = append(byStream[it.Handle.stream], it.Handle.id)
	}
	pipe := c.rdb.Pipeline()
	for s, ids := range byStream {
		pipe.XAck(ctx, s, c.a.cfg.Group, ids...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		c.a.log.WarnContext(ctx, "redisinbox: XACK failed; the entries stay pending and come back as duplicates",
			"entries", len(its), "error", err)
	}
}

// Retry leaves it pending and schedules its claim after delay.
func (c *consumer) Retry(_ context.Context, it *keyorder.Item[entry], delay time.Duration) {
	now := time.Now()
	c.sched[it.Ref] = &scheduled{it: it, due: now.Add(delay), since: now}
}
