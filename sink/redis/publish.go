package redis

import (
	"context"
	"errors"
	"fmt"

	goredis "github.com/redis/go-redis/v9"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/ascii"
	"github.com/outboxgo/outbox/sink"
)

// Field names of a stream entry. The CloudEvents attributes use their own names (there is no
// CloudEvents binding for Redis streams), user headers are prefixed so that they cannot
// collide with them, and the payload is the data field.
const (
	FieldData         = "data"
	HeaderFieldPrefix = "h:"
)

// Publish appends msgs to their streams with one XADD each, pipelined: the whole batch
// costs one round trip. It returns one result per message: nil once Redis replied with the
// entry's id (the entry is then in the server's memory; see the package documentation on
// persistence).
//
// Order: each stream stores its entries in the order the pipeline carries them, which is
// slice order. When a batch holds several messages of one key, it goes out in waves, at
// most one message per key in each, and a key whose message failed retryably sends nothing
// more in this call: a later message never lands ahead of an earlier one that failed.
func (s *Sink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	res := make([]error, len(msgs))
	if len(msgs) == 0 {
		return res
	}
	defer markUnavailable(res)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.isClosed {
		fill(res, nil, ErrClosed)
		return res
	}
	if err := ctx.Err(); err != nil {
		fill(res, nil, fmt.Errorf("redis sink: not sent: %w", err))
		return res
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	// A message with a header sink.CheckHeaders refuses fails alone; the others go on.
	var refused []bool
	for i, r := range msgs {
		if err := sink.CheckHeaders(r); err != nil {
			if refused == nil {
				refused = make([]bool, len(msgs))
			}
			refused[i] = true
			res[i] = fmt.Errorf("redis sink: stream of topic %q: %w", r.Topic, err)
		}
	}
	waves := splitWaves(msgs)
	if waves == nil {
		if refused == nil {
			s.exec(ctx, parent, msgs, nil, res)
			return res
		}
		waves = [][]int{make([]int, 0, len(msgs))}
		for i := range msgs {
			waves[0] = append(waves[0], i)
		}
	}
	var failed map[string]error // keys with a retryable failure in an earlier wave
	for w, wave := range waves {
		if ctx.Err() != nil {
			err := fmt.Errorf("redis sink: not sent: %w", s.ctxErr(parent))
			for _, rest := range waves[w:] {
				fill(res, rest, err)
			}
			return res
		}
		send := wave[:0:0]
		for _, i := range wave {
			if refused != nil && refused[i] {
				continue
			}
			if err, ok := failed[msgs[i].Key]; ok {
				res[i] = fmt.Errorf("redis sink: not sent: an earlier message of key %q failed: %w", msgs[i].Key, err)
				continue
			}
			send = append(send, i)
		}
		if len(send) == 0 {
			continue
		}
		s.exec(ctx, parent, msgs, send, res)
		for _, i := range send {
			if err := res[i]; err != nil && !sink.IsPermanent(err) && msgs[i].Key != "" {
				if failed == nil {
					failed = make(map[string]error)
				}
				failed[msgs[i].Key] = err
			}
		}
	}
	return res
}

// splitWaves returns nil when no key repeats in msgs (the relay's batches: one pipeline),
// else the message indices in waves: the n-th message of every key is in wave n, unkeyed
// messages in wave 0.
func splitWaves(msgs []*outbox.Record) [][]int {
	seen := make(map[string]int, len(msgs))
	repeat := false
	for _, r := range msgs {
		if r.Key == "" {
			continue
		}
		n := seen[r.Key]
		seen[r.Key] = n + 1
		if n > 0 {
			repeat = true
		}
	}
	if !repeat {
		return nil
	}
	clear(seen)
	var waves [][]int
	for i, r := range msgs {
		w := 0
		if r.Key != "" {
			w = seen[r.Key]
			seen[r.Key] = w + 1
		}
		for len(waves) <= w {
			waves = append(waves, nil)
		}
		waves[w] = append(waves[w], i)
	}
	return waves
}

// exec sends the messages at idx (all of msgs when idx is nil) in one pipeline and records
// their results. When ctx ends first it fails them with ctx's error and returns; the
// pipeline then finishes in the background, bounded by the publish timeout.
func (s *Sink) exec(ctx, parent context.Context, msgs []*outbox.Record, idx []int, res []error) {
	n := len(idx)
	if idx == nil {
		n = len(msgs)
	}
	at := func(j int) int {
		if idx == nil {
			return j
		}
		return idx[j]
	}
	pipe := s.client.Pipeline()
	cmds := make([]*goredis.StringCmd, n)
	keys := make([]string, n)
	// XAdd copies the arguments into its command at once, so one scratch slice and one
	// XAddArgs serve the whole batch.
	var vals []any
	args := goredis.XAddArgs{MaxLen: s.maxLen, Approx: s.approx}
	var lastTopic, lastKey string
	for j := 0; j < n; j++ {
		r := msgs[at(j)]
		if j == 0 || r.Topic != lastTopic {
			lastTopic, lastKey = r.Topic, s.streamKey(r.Topic)
		}
		keys[j] = lastKey
		vals = s.appendValues(vals[:0], r)
		args.Stream = lastKey
		args.Values = vals
		cmds[j] = pipe.XAdd(ctx, &args)
	}

	done := make(chan struct{})
	var execErr error // written before done is closed
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		defer close(done)
		_, execErr = pipe.Exec(ctx)
	}()
	select {
	case <-done:
		for j, cmd := range cmds {
			err := cmd.Err()
			if err == nil && cmd.Val() == "" {
				// No reply at all: go-redis leaves the commands untouched when the connection
				// fails before they are sent (a failed AUTH, for one), and reports only
				// through Exec. A reply to XADD always holds the new entry's id.
				err = execErr
				if err == nil {
					err = errNoReply
				}
			}
			res[at(j)] = classify(err, keys[j], parent, s.timeout)
		}
	case <-ctx.Done():
		err := fmt.Errorf("redis sink: waiting for the XADD reply: %w", s.ctxErr(parent))
		for j := 0; j < n; j++ {
			res[at(j)] = err
		}
	}
}

// appendValues appends the stream entry fields of r to vals: the CloudEvents attributes,
// the user's headers as h:<name> (content-type travels as datacontenttype), and data.
func (s *Sink) appendValues(vals []any, r *outbox.Record) []any {
	for _, a := range sink.Attributes(r, s.source) {
		// Constant field names convert to interface values without allocating.
		switch a.Name {
		case "id":
			vals = append(vals, "id", a.Value)
		case "source":
			vals = append(vals, "source", a.Value)
		case "specversion":
			vals = append(vals, "specversion", a.Value)
		case "type":
			vals = append(vals, "type", a.Value)
		case "subject":
			vals = append(vals, "subject", a.Value)
		case "time":
			vals = append(vals, "time", a.Value)
		case "datacontenttype":
			vals = append(vals, "datacontenttype", a.Value)
		case sink.SeqAttribute:
			vals = append(vals, sink.SeqAttribute, a.Value)
		default:
			vals = append(vals, a.Name, a.Value)
		}
	}
	for name, v := range r.Headers {
		if ascii.EqualFold(name, "content-type") {
			continue
		}
		vals = append(vals, HeaderFieldPrefix+name, v)
	}
	return append(vals, FieldData, r.Payload)
}

// errNoReply is the result of a command that got neither a reply nor an error.
var errNoReply = errors.New("no reply from Redis")

// ctxErr tells the caller's cancellation from the sink's own publish timeout.
func (s *Sink) ctxErr(parent context.Context) error {
	if err := parent.Err(); err != nil {
		return err
	}
	return fmt.Errorf("no reply within the publish timeout of %s: %w", s.timeout, context.DeadlineExceeded)
}

// fill sets every result at idx (every result when idx is nil) to err.
func fill(res []error, idx []int, err error) {
	if idx == nil {
		for i := range res {
			res[i] = err
		}
		return
	}
	for _, i := range idx {
		res[i] = err
	}
}
