package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/ascii"
	"github.com/outboxgo/outbox/sink"
)

// Header names of the CloudEvents Kafka binding in binary content mode.
const (
	headerID          = "ce_id"
	headerSource      = "ce_source"
	headerSpecVersion = "ce_specversion"
	headerType        = "ce_type"
	headerSubject     = "ce_subject"
	headerTime        = "ce_time"
	headerSeq         = "ce_outboxseq" // the outboxseq extension: Seq, the per-key position
	headerContentType = "content-type" // datacontenttype
)

// envelopeHeaders is the most headers the envelope adds to the user's.
const envelopeHeaders = 8

// maxSeqLen is the longest decimal int64.
const maxSeqLen = 20

var specVersion = []byte(sink.SpecVersion)

// call is the bookkeeping of one Publish call. Promises run on franz-go's goroutine and
// may still arrive after Publish returned (a canceled call leaves records in flight);
// returned stops them from touching the results the caller now owns.
type call struct {
	mu       sync.Mutex
	res      []error
	settled  []bool
	left     int
	done     chan struct{}
	returned bool
	// suspect is set when a record failed with an error franz-go's producer may not
	// recover from by itself (see checkProducer).
	suspect bool
}

func (c *call) settle(i int, err error, suspect bool) {
	c.mu.Lock()
	if !c.returned {
		c.res[i] = err
		c.settled[i] = true
		c.suspect = c.suspect || suspect
	}
	c.left--
	if c.left == 0 {
		close(c.done)
	}
	c.mu.Unlock()
}

// Publish produces msgs with franz-go's idempotent producer (acks=all) without waiting
// between them, then waits for every acknowledgement, for ctx to end or for
// Config.ProduceTimeout, whichever comes first. It returns one result per message: nil
// once every in-sync replica has it.
//
// Messages of one key go to one partition, in slice order; the idempotent producer keeps
// that order through its own retries. A message the broker rejects together with the
// others of its record batch (too large for the topic, invalid) is tried again alone, so
// that only the culprit fails permanently.
func (s *Sink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	res := make([]error, len(msgs))
	if len(msgs) == 0 {
		return res
	}
	defer markUnavailable(res)
	if err := ctx.Err(); err != nil {
		fill(res, fmt.Errorf("kafka sink: not sent: %w", err))
		return res
	}
	s.mu.RLock()
	if s.isClosed {
		s.mu.RUnlock()
		fill(res, ErrClosed)
		return res
	}
	cl := s.cl
	fatal := s.publish(ctx, cl, msgs, res)
	s.mu.RUnlock()
	if fatal != nil {
		s.reset(cl, fatal)
	}
	return res
}

// publish does the work of Publish on cl. It returns an error when cl's producer failed
// beyond recovery and must be replaced.
func (s *Sink) publish(parent context.Context, cl *kgo.Client, msgs []*outbox.Record, res []error) error {
	// franz-go fails records it could not deliver within the timeout by itself
	// (RecordDeliveryTimeout), with the reason (an unknown topic, say); the grace lets it
	// report before the wait gives up.
	ctx, cancel := context.WithTimeout(parent, s.timeout+s.grace())
	defer cancel()

	c := &call{
		res:     res,
		settled: make([]bool, len(msgs)),
		left:    len(msgs),
		done:    make(chan struct{}),
	}
	recs := s.records(msgs, c)
	for i := range recs {
		r := &recs[i]
		if r.Topic == "" {
			continue // settled: invalid topic or too large
		}
		if err := ctx.Err(); err != nil {
			err = s.waitErr(parent, err, "not sent")
			for j := i; j < len(recs); j++ {
				if recs[j].Topic != "" {
					c.settle(j, err, false)
				}
			}
			break
		}
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			var suspect bool
			if err != nil {
				if isContextErr(err) && ctx.Err() == nil {
					// franz-go fails a partition's buffered records together (it keeps
					// no gaps): a record of another, canceled call went first.
					err = fmt.Errorf("failed along with a canceled message of another Publish call on the same partition: %w", err)
				}
				err, suspect = classify(err, r.Topic)
			}
			c.settle(i, err, suspect)
		})
	}

	select {
	case <-c.done:
	case <-ctx.Done():
	}
	c.mu.Lock()
	c.returned = true
	suspect := c.suspect
	var waitErr error
	for i, ok := range c.settled {
		if !ok {
			if waitErr == nil {
				waitErr = s.waitErr(parent, ctx.Err(), "waiting for the acknowledgement")
			}
			res[i] = waitErr
		}
	}
	c.mu.Unlock()

	s.isolate(ctx, parent, msgs, recs, res)
	s.explainTimeouts(res)

	if suspect {
		return s.checkProducer(ctx, cl)
	}
	return nil
}

// explainTimeouts adds why the client could not reach the brokers, if it could not, to
// the messages that timed out: a refused connection, an untrusted certificate or failed
// authentication is what an operator needs to read in last_error.
func (s *Sink) explainTimeouts(res []error) {
	var connErr, cause error
	for i, err := range res {
		if err == nil || sink.IsPermanent(err) ||
			!errors.Is(err, kgo.ErrRecordTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			continue
		}
		if connErr == nil {
			if connErr, cause = s.conns.lastErr(); connErr == nil {
				return
			}
		}
		if !strings.Contains(err.Error(), cause.Error()) { // franz-go may have said it
			res[i] = fmt.Errorf("%w (last connection attempt: %v)", err, connErr)
		}
	}
}

// grace is how much longer than the produce timeout Publish waits for franz-go to fail
// the records it gave up on.
func (s *Sink) grace() time.Duration {
	return min(s.timeout/4, 250*time.Millisecond)
}

// waitErr is the retryable error for messages left when ctx ended: the caller's
// cancellation, or the sink's own timeout.
func (s *Sink) waitErr(parent context.Context, err error, what string) error {
	if perr := parent.Err(); perr != nil {
		return fmt.Errorf("kafka sink: %s: %w", what, perr)
	}
	return fmt.Errorf("kafka sink: %s: no acknowledgement within the produce timeout of %s: %w", what, s.timeout, err)
}

// records builds the Kafka records of msgs. A message that cannot be sent (invalid topic,
// a header sink.CheckHeaders refuses, too large) is settled at once and gets a record with an empty Topic.
//
// Every byte slice of the records is carved from one buffer per call: the payloads are
// copied, since franz-go may still hold the records after Publish returned (when ctx
// ended), and the caller may reuse its buffers then.
func (s *Sink) records(msgs []*outbox.Record, c *call) []kgo.Record {
	size, nh := 0, 0
	for _, m := range msgs {
		size += uuidLen + maxTimeLen + maxSeqLen + len(m.Type) + len(m.Topic) + len(m.Key) + len(m.Payload)
		for _, v := range m.Headers {
			size += len(v)
		}
		nh += envelopeHeaders + len(m.Headers)
	}
	buf := make([]byte, 0, size)
	hdrs := make([]kgo.RecordHeader, 0, nh)
	recs := make([]kgo.Record, len(msgs))
	// put appends b to buf and returns the copy. buf is sized for everything; if it ever
	// had to grow, earlier slices would keep the old array alive, which is still correct.
	put := func(b []byte) []byte {
		start := len(buf)
		buf = append(buf, b...)
		return buf[start:len(buf):len(buf)]
	}
	putString := func(str string) []byte {
		start := len(buf)
		buf = append(buf, str...)
		return buf[start:len(buf):len(buf)]
	}
	for i, m := range msgs {
		topic, err := s.topics.get(m.Topic)
		if err == nil {
			if err = sink.CheckHeaders(m); err != nil {
				err = fmt.Errorf("kafka sink: topic %q: %w", m.Topic, err)
			}
		}
		if err != nil {
			c.settle(i, err, false)
			continue
		}
		r := &recs[i]
		h0 := len(hdrs)
		start := len(buf)
		buf = appendUUID(buf, m.ID)
		hdrs = append(hdrs,
			kgo.RecordHeader{Key: headerID, Value: buf[start:len(buf):len(buf)]},
			kgo.RecordHeader{Key: headerSource, Value: s.sourceB},
			kgo.RecordHeader{Key: headerSpecVersion, Value: specVersion},
			kgo.RecordHeader{Key: headerType, Value: putString(m.EventType())},
		)
		if m.Key != "" {
			r.Key = putString(m.Key)
			hdrs = append(hdrs, kgo.RecordHeader{Key: headerSubject, Value: r.Key})
		}
		if !m.CreatedAt.IsZero() {
			start := len(buf)
			buf = m.CreatedAt.UTC().AppendFormat(buf, time.RFC3339Nano)
			hdrs = append(hdrs, kgo.RecordHeader{Key: headerTime, Value: buf[start:len(buf):len(buf)]})
		}
		if m.Seq > 0 {
			start := len(buf)
			buf = strconv.AppendInt(buf, m.Seq, 10)
			hdrs = append(hdrs, kgo.RecordHeader{Key: headerSeq, Value: buf[start:len(buf):len(buf)]})
		}
		for name, v := range m.Headers {
			// The user's content-type is the datacontenttype attribute: one header, under
			// the binding's lower-case name.
			if ascii.EqualFold(name, headerContentType) {
				name = headerContentType
			}
			hdrs = append(hdrs, kgo.RecordHeader{Key: name, Value: putString(v)})
		}
		r.Headers = hdrs[h0:len(hdrs):len(hdrs)]
		if len(m.Payload) > 0 {
			// An empty payload is a record without value: a tombstone on a compacted
			// topic, as the binding prescribes for an event without data.
			r.Value = put(m.Payload)
		}
		if n := batchSize(r); n > s.maxBytes {
			c.settle(i, sink.Permanent(fmt.Errorf("kafka sink: publishing to %q: message of %d bytes (payload %d bytes) "+
				"does not fit in a record batch of max_message_bytes %d", topic, n, len(m.Payload), s.maxBytes)), false)
			*r = kgo.Record{}
			continue
		}
		r.Topic = topic
	}
	return recs
}

const (
	uuidLen    = 36
	maxTimeLen = len("2006-01-02T15:04:05.999999999Z")
)

// recordBatchOverhead is the size of an empty record batch, as franz-go counts it.
const recordBatchOverhead = 65

// batchSize is the size of a record batch holding only r, the way franz-go measures it
// against ProducerBatchMaxBytes before sending.
func batchSize(r *kgo.Record) int {
	l := 1 + 1 + 1 + // attributes, timestamp delta, offset delta
		varintLen(len(r.Key)) + len(r.Key) +
		varintLen(len(r.Value)) + len(r.Value) +
		varintLen(len(r.Headers))
	for _, h := range r.Headers {
		l += varintLen(len(h.Key)) + len(h.Key) + varintLen(len(h.Value)) + len(h.Value)
	}
	return recordBatchOverhead + varintLen(l) + l
}

// varintLen is the length of n as a zig-zag varint.
func varintLen(n int) int {
	u := uint64(n)<<1 ^ uint64(n>>63)
	l := 1
	for u >= 0x80 {
		u >>= 7
		l++
	}
	return l
}

// isolate tries each message the broker rejected along with its record batch again on
// its own, on the probe client, one at a time: the one the broker still rejects alone
// fails permanently, the others go through. A message is not retried while an earlier
// message of its key in this call failed retryably, which it would overtake.
func (s *Sink) isolate(ctx, parent context.Context, msgs []*outbox.Record, recs []kgo.Record, res []error) {
	var idx []int
	for i, err := range res {
		if _, ok := errors.AsType[*batchRejectedError](err); ok {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return
	}
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	probe, perr := s.probeClient()
	failedKeys := map[string]bool{}
	next := 0
	for i, err := range res {
		key := msgs[i].Key
		if next == len(idx) {
			break
		}
		if i != idx[next] {
			if err != nil && !sink.IsPermanent(err) && key != "" {
				failedKeys[key] = true
			}
			continue
		}
		next++
		rej, _ := errors.AsType[*batchRejectedError](err)
		switch {
		case perr != nil:
			res[i] = fmt.Errorf("%w (could not retry it alone: %v)", rej, perr)
		case ctx.Err() != nil:
			res[i] = fmt.Errorf("%w (not retried alone: %w)", rej, s.waitErr(parent, ctx.Err(), "retrying alone"))
		case key != "" && failedKeys[key]:
			res[i] = fmt.Errorf("%w (not retried alone: an earlier message of key %q failed)", rej, key)
		default:
			r := recs[i]
			single := kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
			res[i] = nil
			if err := probe.ProduceSync(ctx, &single).FirstErr(); err != nil {
				var suspect bool
				res[i], suspect = classify(err, r.Topic)
				if suspect && s.checkProducer(ctx, probe) != nil {
					// Like the main client's (see checkProducer): make a new one next time.
					probe.Close()
					s.probe, probe = nil, nil
					perr = errors.New("the probe client's producer failed")
				}
				if again, ok := errors.AsType[*batchRejectedError](res[i]); ok {
					res[i] = sink.Permanent(fmt.Errorf("%w (also when sent alone)", again))
				} else if isContextErr(err) && ctx.Err() != nil {
					res[i] = fmt.Errorf("%w (not retried alone: %w)", rej, s.waitErr(parent, ctx.Err(), "retrying alone"))
				}
			}
		}
		if res[i] != nil && !sink.IsPermanent(res[i]) && key != "" {
			failedKeys[key] = true
		}
	}
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// fill sets every result to err.
func fill(res []error, err error) {
	for i := range res {
		res[i] = err
	}
}

// appendUUID appends the canonical text form of id without allocating.
func appendUUID(dst []byte, id uuid.UUID) []byte {
	const hexDigits = "0123456789abcdef"
	for i, b := range id {
		switch i {
		case 4, 6, 8, 10:
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[b>>4], hexDigits[b&0x0f])
	}
	return dst
}
