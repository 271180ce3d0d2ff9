package stdout

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
)

// Config configures a Sink. The zero value writes to os.Stdout.
type Config struct {
	// Writer receives the JSON lines. Default os.Stdout.
	Writer io.Writer
}

// Sink writes each message as one JSON object per line. It is safe for concurrent use:
// lines of concurrent batches never interleave.
type Sink struct {
	mu sync.Mutex
	w  io.Writer
}

var _ sink.Sink = (*Sink)(nil)

// New returns a Sink writing to cfg.Writer.
func New(cfg Config) *Sink {
	w := cfg.Writer
	if w == nil {
		w = os.Stdout
	}
	return &Sink{w: w}
}

// line is the JSON shape of one message.
type line struct {
	ID            string            `json:"id"`
	Topic         string            `json:"topic"`
	Key           string            `json:"key"`
	Type          string            `json:"type"`
	Seq           int64             `json:"seq,omitempty"` // the position; omitted when Seq <= 0
	CreatedAt     time.Time         `json:"created_at"`
	Headers       map[string]string `json:"headers,omitempty"`
	Payload       json.RawMessage   `json:"payload,omitempty"`
	PayloadBase64 *string           `json:"payload_base64,omitempty"`
}

// Publish writes one line per message with a single Write call, and acknowledges every
// message whose line was written completely. A failed or short write fails the messages
// from the first incomplete line on, retryably. A ctx that has ended writes nothing. A
// message with a header sink.CheckHeaders refuses fails permanently, as on every sink.
//
// The payload appears as JSON under "payload" when it is valid JSON (compacted onto the
// line), else base64-encoded under "payload_base64".
func (s *Sink) Publish(ctx context.Context, msgs []*outbox.Record) []error {
	res := make([]error, len(msgs))
	if len(msgs) == 0 {
		return res
	}
	if err := ctx.Err(); err != nil {
		return sink.FailAll(len(msgs), fmt.Errorf("stdout sink: not written: %w", err))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	ends := make([]int, len(msgs))
	for i, r := range msgs {
		if err := sink.CheckHeaders(r); err != nil {
			// Refused as by every sink, so a row fails the same way whichever sink it meets.
			res[i] = fmt.Errorf("stdout sink: %w", err)
			ends[i] = buf.Len()
			continue
		}
		l := line{
			ID:        r.ID.String(),
			Topic:     r.Topic,
			Key:       r.Key,
			Type:      r.EventType(),
			CreatedAt: r.CreatedAt.UTC(),
			Headers:   r.Headers,
		}
		if r.Seq > 0 {
			l.Seq = r.Seq
		}
		if json.Valid(r.Payload) {
			l.Payload = r.Payload
		} else {
			b64 := base64.StdEncoding.EncodeToString(r.Payload)
			l.PayloadBase64 = &b64
		}
		// Encode compacts RawMessage, so a pretty-printed payload still fits on one line.
		if err := enc.Encode(&l); err != nil {
			// Cannot happen for these field types; fail the message rather than the batch.
			res[i] = sink.Permanent(fmt.Errorf("stdout sink: encoding message %s: %w", l.ID, err))
		}
		ends[i] = buf.Len()
	}

	s.mu.Lock()
	n, err := s.w.Write(buf.Bytes())
	s.mu.Unlock()
	if err == nil && n < buf.Len() {
		err = io.ErrShortWrite
	}
	if err != nil {
		werr := fmt.Errorf("stdout sink: writing: %w", err)
		for i := range msgs {
			if ends[i] > n && res[i] == nil {
				res[i] = werr
			}
		}
	}
	return res
}

// Close does nothing: the writer belongs to the caller.
func (s *Sink) Close() error { return nil }
