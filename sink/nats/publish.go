package nats

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/ascii"
	"github.com/outboxgo/outbox/sink"
)

// The sink publishes to JetStream the way jetstream.PublishMsgAsync does (a plain publish
// whose reply subject receives the PubAck), but keeps its own books per batch: the reply
// subject names the batch and the message's index, so an ack lands straight in the result
// slice. Compared with PublishMsgAsync this drops, per message, the future with its two
// channels, the ack timer, the pending-map entry and the reflective JSON decoding of the
// ack, and the message and its header map are reused across the batch (nats.go serializes
// them during PublishMsg). On a 2-core machine shared with nats-server this is the
// difference between the client and the server competing for the CPU or not.

// slot states
const (
	slotUnsent uint8 = iota
	slotPending
	slotDone
)

// batch is the bookkeeping of one Publish call.
type batch struct {
	id   uint64
	msgs []*outbox.Record
	subj []string // subject per message, for error messages

	mu      sync.Mutex
	res     []error
	state   []uint8
	pending int           // slots in slotPending
	sending bool          // the send loop is still running
	done    chan struct{} // closed when sending ended and nothing is pending
}

// finish moves slot i from pending to done with err. Caller holds b.mu. It reports whether
// the slot was pending (so that the caller releases its in-flight permit).
func (b *batch) finish(i int, err error) bool {
	if b.state[i] != slotPending {
		return false
	}
	b.state[i] = slotDone
	b.res[i] = err
	b.pending--
	if b.pending == 0 && !b.sending {
		close(b.done)
	}
	return true
}

// Publish sends msgs to JetStream in slice order without waiting between messages, then
// waits for every acknowledgement, for ctx to end, or for Config.PublishTimeout, whichever
// comes first. It returns one result per message: nil once JetStream stored it, a
// sink.Duplicate result when JetStream answered that it already held a message with this id
// (a success: the message is in the stream), sink.Unavailable errors for failures of the sink
// as a whole (see the package documentation).
//
// Order: messages go out in slice order on one connection, so JetStream stores them in that
// order. When the connection drops during a batch, the rest of the batch is failed without
// being sent, so that no later message can land in the stream ahead of an earlier one that
// was lost with the connection. A message that JetStream rejects does not stop the ones
// already sent after it.
func (s *Sink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	res := make([]error, len(msgs))
	if len(msgs) == 0 {
		return res
	}
	defer markUnavailable(res)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.isClosed {
		fill(res, 0, ErrClosed)
		return res
	}
	if err := ctx.Err(); err != nil {
		fill(res, 0, fmt.Errorf("nats sink: not sent: %w", err))
		return res
	}
	if st := s.nc.Status(); st != natsgo.CONNECTED {
		fill(res, 0, notConnected(st))
		return res
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()

	if s.streamCfg != nil {
		if err := s.ensureStream(ctx); err != nil {
			fill(res, 0, fmt.Errorf("nats sink: not sent: %w", err))
			return res
		}
	}

	b := &batch{
		id:      s.nextBatch.Add(1),
		msgs:    msgs,
		subj:    make([]string, len(msgs)),
		res:     res,
		state:   make([]uint8, len(msgs)),
		sending: true,
		done:    make(chan struct{}),
	}
	s.batchMu.Lock()
	s.batches[b.id] = b
	s.batchMu.Unlock()
	defer func() {
		s.batchMu.Lock()
		delete(s.batches, b.id)
		s.batchMu.Unlock()
	}()

	reconnects := s.nc.Stats().Reconnects
	s.send(ctx, parent, b, reconnects)
	s.wait(ctx, parent, b, reconnects)
	return res
}

// send publishes the batch's messages in order. Messages that cannot be sent get their
// error at once; sent ones are pending until their ack.
func (s *Sink) send(ctx, parent context.Context, b *batch, reconnects uint64) {
	defer func() {
		b.mu.Lock()
		b.sending = false
		if b.pending == 0 {
			close(b.done)
		}
		b.mu.Unlock()
	}()
	done := ctx.Done()
	texts := batchTexts(s.inbox, b.id, b.msgs)
	// One message and header map for the whole batch: PublishMsg encodes them before it
	// returns and nothing keeps them.
	var m natsgo.Msg
	h := make(natsgo.Header, 16)
	vals := make([]string, 0, 16)
	stop := func(from int, err error) {
		b.mu.Lock()
		fill(b.res, from, err)
		b.mu.Unlock()
	}
	for i, r := range b.msgs {
		subj, err := s.subjects.get(r.Topic)
		if err == nil {
			if err = sink.CheckHeaders(r); err != nil {
				err = fmt.Errorf("nats sink: topic %q: %w", r.Topic, err)
			}
		}
		if err != nil {
			b.mu.Lock()
			b.res[i] = err
			b.mu.Unlock()
			continue
		}
		// Wait for an in-flight permit (MaxPending), or for the end of ctx.
		select {
		case s.inflight <- struct{}{}:
		default:
			select {
			case s.inflight <- struct{}{}:
			case <-done:
				stop(i, fmt.Errorf("nats sink: not sent: %w", s.ctxErr(parent)))
				return
			}
		}
		release := true
		// Checked before every message: a message sent after a reconnect could overtake an
		// earlier one of its key lost with the old connection.
		select {
		case <-done:
			err = fmt.Errorf("nats sink: not sent: %w", s.ctxErr(parent))
		default:
			if st := s.nc.Status(); st != natsgo.CONNECTED {
				err = notConnected(st)
			} else if s.nc.Stats().Reconnects != reconnects {
				err = fmt.Errorf("nats sink: not sent: the connection was re-established during the batch: %w", natsgo.ErrDisconnected)
			}
		}
		if err != nil {
			<-s.inflight
			stop(i, err)
			return
		}
		m.Subject = subj
		m.Reply = texts[i].reply
		m.Data = r.Payload
		vals = s.header(h, vals[:0], r, texts[i])
		m.Header = h
		// Pending before the publish: the ack may arrive before PublishMsg returns.
		b.mu.Lock()
		b.subj[i] = subj
		b.state[i] = slotPending
		b.pending++
		b.mu.Unlock()
		if err := s.nc.PublishMsg(&m); err != nil {
			perr := classify(err, subj)
			b.mu.Lock()
			if !b.finish(i, perr) {
				release = false // the disconnect sweep got there first
			}
			b.mu.Unlock()
			if release {
				<-s.inflight
			}
			if !sink.IsPermanent(perr) {
				// The connection is in trouble: send nothing more of this batch.
				stop(i+1, fmt.Errorf("nats sink: not sent after an earlier send failed: %w", err))
				return
			}
		}
	}
}

// wait blocks until every sent message of b has its result, then returns; when ctx ends or
// the connection drops first, the messages still waiting fail with a retryable error.
func (s *Sink) wait(ctx, parent context.Context, b *batch, reconnects uint64) {
	tick := time.NewTicker(connCheckInterval)
	defer tick.Stop()
	for {
		var err error
		select {
		case <-b.done:
			return
		case <-ctx.Done():
			err = fmt.Errorf("nats sink: waiting for JetStream acknowledgement: %w", s.ctxErr(parent))
		case <-tick.C:
			// Acks of messages sent on a connection that is gone will never come.
			if st := s.nc.Status(); st != natsgo.CONNECTED {
				err = fmt.Errorf("nats sink: waiting for JetStream acknowledgement: connection %s: %w", st, natsgo.ErrDisconnected)
			} else if s.nc.Stats().Reconnects != reconnects {
				err = fmt.Errorf("nats sink: waiting for JetStream acknowledgement: connection re-established: %w", natsgo.ErrDisconnected)
			}
		}
		if err == nil {
			continue
		}
		b.mu.Lock()
		for i := range b.state {
			if b.finish(i, err) {
				<-s.inflight
			}
		}
		b.mu.Unlock()
		return
	}
}

// connCheckInterval is how often a waiting Publish checks that its connection is still the
// one its messages went out on.
const connCheckInterval = 50 * time.Millisecond

// handleAck is the reply subscription's handler: it routes a PubAck to its batch slot.
func (s *Sink) handleAck(m *natsgo.Msg) {
	id, idx, ok := parseReply(m.Subject, s.inbox)
	if !ok {
		return
	}
	s.batchMu.Lock()
	b := s.batches[id]
	s.batchMu.Unlock()
	if b == nil || idx >= len(b.state) {
		return // a batch that gave up already
	}
	err := parseAck(m)
	b.mu.Lock()
	if err != nil {
		err = classify(err, b.subj[idx])
	}
	released := b.finish(idx, err)
	b.mu.Unlock()
	if released {
		<-s.inflight
	}
}

// msgTexts are the strings a message's publish needs that vary per message: the reply
// subject inbox+"<batch>.<i>", the id, the CloudEvents time and the position (the decimal
// Seq, "" when Seq <= 0).
type msgTexts struct{ reply, id, time, seq string }

// batchTexts returns the texts of every message of a batch, all slices of one string: one
// allocation for the batch instead of two or three per message.
func batchTexts(inbox string, batch uint64, msgs []*outbox.Record) []msgTexts {
	type ends struct{ reply, id, time, seq int }
	per := len(inbox) + 20 + 1 + 7 + 36 + len(time.RFC3339Nano) + 20
	buf := make([]byte, 0, len(msgs)*per)
	marks := make([]ends, len(msgs))
	for i, r := range msgs {
		buf = append(buf, inbox...)
		buf = strconv.AppendUint(buf, batch, 10)
		buf = append(buf, '.')
		buf = strconv.AppendInt(buf, int64(i), 10)
		marks[i].reply = len(buf)
		buf = appendUUID(buf, r.ID)
		marks[i].id = len(buf)
		if !r.CreatedAt.IsZero() {
			buf = r.CreatedAt.UTC().AppendFormat(buf, time.RFC3339Nano)
		}
		marks[i].time = len(buf)
		if r.Seq > 0 {
			buf = strconv.AppendInt(buf, r.Seq, 10)
		}
		marks[i].seq = len(buf)
	}
	all := string(buf)
	out := make([]msgTexts, len(msgs))
	start := 0
	for i, m := range marks {
		out[i] = msgTexts{reply: all[start:m.reply], id: all[m.reply:m.id], time: all[m.id:m.time], seq: all[m.time:m.seq]}
		start = m.seq
	}
	return out
}

// appendUUID appends id in its canonical text form (as uuid.UUID.String writes it).
func appendUUID(dst []byte, id uuid.UUID) []byte {
	var b [36]byte
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:], id[10:])
	return append(dst, b[:]...)
}

// parseReply extracts batch id and index from inbox+"<batch>.<i>".
func parseReply(subject, inbox string) (id uint64, idx int, ok bool) {
	rest, found := strings.CutPrefix(subject, inbox)
	if !found {
		return 0, 0, false
	}
	a, b, found := strings.Cut(rest, ".")
	if !found {
		return 0, 0, false
	}
	id, err := strconv.ParseUint(a, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	i, err := strconv.Atoi(b)
	if err != nil || i < 0 {
		return 0, 0, false
	}
	return id, i, true
}

var ackPrefix = []byte(`{"stream":`)

// mayHoldError reports whether data could decode to a response with an error or a duplicate
// flag: it mentions "error" or "duplicate" in any letter case (encoding/json matches keys
// case-insensitively) or contains an escape (which could spell them).
func mayHoldError(data []byte) bool {
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '\\':
			return true
		case 'e', 'E':
			if len(data)-i >= 5 && ascii.EqualFold(string(data[i:i+5]), "error") {
				return true
			}
		case 'd', 'D':
			if len(data)-i >= 9 && ascii.EqualFold(string(data[i:i+9]), "duplicate") {
				return true
			}
		}
	}
	return false
}

// parseAck returns nil for a PubAck, a sink.Duplicate result for a PubAck flagged as
// duplicate, and the error otherwise.
func parseAck(m *natsgo.Msg) error {
	if len(m.Data) == 0 {
		// A status message: 503 means no stream listens on the subject.
		if st := m.Header.Get("Status"); st == "503" {
			return jetstream.ErrNoStreamResponse
		} else if st != "" {
			return fmt.Errorf("unexpected status %s %s in reply to publish", st, m.Header.Get("Description"))
		}
		return jetstream.ErrInvalidJSAck
	}
	// Fast path for the common ack, {"stream":"NAME","seq":N...}. Anything else, anything
	// mentioning an error or a duplicate at all, takes the full decoding.
	if bytes.HasPrefix(m.Data, ackPrefix) && m.Data[len(m.Data)-1] == '}' && !mayHoldError(m.Data) {
		return nil
	}
	var resp struct {
		Error     *jetstream.APIError `json:"error"`
		Stream    string              `json:"stream"`
		Sequence  uint64              `json:"seq"`
		Duplicate bool                `json:"duplicate"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return fmt.Errorf("%w: %v", jetstream.ErrInvalidJSAck, err)
	}
	if resp.Error != nil {
		return resp.Error
	}
	if resp.Stream == "" {
		return jetstream.ErrInvalidJSAck
	}
	if resp.Duplicate {
		return duplicate(resp.Stream, resp.Sequence)
	}
	return nil
}

// ctxErr tells the caller's cancellation from the sink's own publish timeout.
func (s *Sink) ctxErr(parent context.Context) error {
	if err := parent.Err(); err != nil {
		return err
	}
	return fmt.Errorf("no acknowledgement within the publish timeout of %s: %w", s.timeout, context.DeadlineExceeded)
}

// header fills h with the NATS headers of r: the user's headers as they are, the CloudEvents
// attributes as ce- headers (NATS binding 3.1.3: datacontenttype as ce-datacontenttype,
// values percent-encoded), and Nats-Msg-Id for JetStream dedupe. r's headers passed
// sink.CheckHeaders, so none is a ce- or Nats- header. The attributes are those of
// sink.Attributes (TestHeaderMatchesAttributes holds them to it), set here without its
// per-message slice; tx holds r's id, created_at and Seq in text. vals backs the
// single-value slices; the grown slice is returned for reuse.
func (s *Sink) header(h natsgo.Header, vals []string, r *outbox.Record, tx msgTexts) []string {
	clear(h)
	id := tx.id
	n := len(r.Headers) + 9
	if cap(vals) < n {
		vals = make([]string, 0, n)
	}
	set := func(name, value string) {
		vals = append(vals, value)
		k := len(vals)
		h[name] = vals[k-1 : k : k]
	}
	var contentType string
	hasContentType := false
	for name, v := range r.Headers {
		// content-type travels as the datacontenttype attribute below.
		if ascii.EqualFold(name, "content-type") {
			contentType, hasContentType = v, true
			continue
		}
		set(name, v)
	}
	set("ce-id", id)
	set("ce-source", sink.PercentEncode(s.source))
	set("ce-specversion", sink.SpecVersion)
	set("ce-type", sink.PercentEncode(r.EventType()))
	if r.Key != "" {
		set("ce-subject", sink.PercentEncode(r.Key))
	}
	if !r.CreatedAt.IsZero() {
		set("ce-time", tx.time)
	}
	if hasContentType {
		set(ceHeader("datacontenttype"), sink.PercentEncode(contentType))
	}
	if r.Seq > 0 {
		set("ce-outboxseq", tx.seq) // digits: nothing to percent-encode
	}
	set(jetstream.MsgIDHeader, id)
	return vals
}

// ceHeader maps a CloudEvents attribute to its NATS binary-mode header (binding 3.1.3.1:
// the attribute name prefixed with ce-, datacontenttype included), without allocating for
// the known attributes.
func ceHeader(attr string) string {
	switch attr {
	case "id":
		return "ce-id"
	case "source":
		return "ce-source"
	case "specversion":
		return "ce-specversion"
	case "type":
		return "ce-type"
	case "subject":
		return "ce-subject"
	case "time":
		return "ce-time"
	case "datacontenttype":
		return "ce-datacontenttype"
	case sink.SeqAttribute:
		return "ce-outboxseq"
	default:
		return "ce-" + attr
	}
}

// fill sets every nil result from index from on to err.
func fill(res []error, from int, err error) {
	for i := from; i < len(res); i++ {
		if res[i] == nil {
			res[i] = err
		}
	}
}
