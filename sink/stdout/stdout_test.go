package stdout_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/sink"
	"github.com/outboxgo/outbox/sink/sinktest"
	"github.com/outboxgo/outbox/sink/stdout"
)

// lineStream is an io.Writer that hands complete lines to a Receiver.
type lineStream struct {
	mu     sync.Mutex
	buf    []byte
	notify chan struct{}
}

func newLineStream() *lineStream { return &lineStream{notify: make(chan struct{}, 1)} }

func (l *lineStream) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.buf = append(l.buf, p...)
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
	return len(p), nil
}

// Receive parses the next line.
func (l *lineStream) Receive(ctx context.Context) (sinktest.Received, error) {
	for {
		l.mu.Lock()
		if i := bytes.IndexByte(l.buf, '\n'); i >= 0 {
			line := bytes.Clone(l.buf[:i])
			l.buf = l.buf[i+1:]
			l.mu.Unlock()
			return decode(line)
		}
		l.mu.Unlock()
		select {
		case <-l.notify:
		case <-ctx.Done():
			return sinktest.Received{}, ctx.Err()
		}
	}
}

type jsonLine struct {
	ID            string            `json:"id"`
	Topic         string            `json:"topic"`
	Key           string            `json:"key"`
	Type          string            `json:"type"`
	Seq           *int64            `json:"seq"`
	CreatedAt     string            `json:"created_at"`
	Headers       map[string]string `json:"headers"`
	Payload       json.RawMessage   `json:"payload"`
	PayloadBase64 *string           `json:"payload_base64"`
}

func decode(line []byte) (sinktest.Received, error) {
	var l jsonLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return sinktest.Received{}, err
	}
	r := sinktest.Received{ID: l.ID, Topic: l.Topic, Type: l.Type, Subject: l.Key, Time: l.CreatedAt, Headers: l.Headers}
	if l.Seq != nil { // present: the position, which the sink omits when Seq <= 0
		r.OutboxSeq = strconv.FormatInt(*l.Seq, 10)
	}
	for k, v := range l.Headers {
		if strings.EqualFold(k, "content-type") {
			r.DataContentType = v
		}
	}
	switch {
	case l.Payload != nil && l.PayloadBase64 != nil:
		return r, errors.New("both payload and payload_base64")
	case l.Payload != nil:
		r.Payload = l.Payload
	case l.PayloadBase64 != nil:
		p, err := base64.StdEncoding.DecodeString(*l.PayloadBase64)
		if err != nil {
			return r, err
		}
		r.Payload = p
	default:
		return r, errors.New("no payload field")
	}
	return r, nil
}

func TestConformance(t *testing.T) {
	t.Parallel()
	sinktest.Run(t, func(t *testing.T) *sinktest.Harness {
		ls := newLineStream()
		return &sinktest.Harness{
			Sink:       stdout.New(stdout.Config{Writer: ls}),
			Topics:     []string{"orders", "users.created"},
			Receiver:   ls,
			NoEnvelope: true,
		}
	})
}

func TestPayloadForms(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	s := stdout.New(stdout.Config{Writer: &buf})
	recs := []*outbox.Record{
		sinktest.NewRecord("t", "k", []byte("{\n  \"pretty\": [1, 2],\n  \"html\": \"<b>&</b>\"\n}\n")),
		sinktest.NewRecord("t", "k", []byte(`"just a string"`)),
		sinktest.NewRecord("t", "k", []byte("not json\n")),
		sinktest.NewRecord("t", "k", nil),
	}
	for i, err := range s.Publish(context.Background(), recs) {
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(recs) {
		t.Fatalf("%d lines for %d messages:\n%s", len(lines), len(recs), buf.String())
	}
	wantPayload := []string{
		`"payload":{"pretty":[1,2],"html":"<b>&</b>"}`,
		`"payload":"just a string"`,
		`"payload_base64":"bm90IGpzb24K"`,
		`"payload_base64":""`,
	}
	for i, l := range lines {
		if !strings.Contains(l, wantPayload[i]) {
			t.Errorf("line %d = %s\nwant it to contain %s", i, l, wantPayload[i])
		}
		if _, err := decode([]byte(l)); err != nil {
			t.Errorf("line %d does not decode: %v", i, err)
		}
	}
}

// failingWriter accepts limit bytes, then fails.
type failingWriter struct {
	limit int
	got   bytes.Buffer
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) <= w.limit {
		w.limit -= len(p)
		return w.got.Write(p)
	}
	n, _ := w.got.Write(p[:w.limit])
	w.limit = 0
	return n, errors.New("disk full")
}

// TestWriteFailure: messages whose line was written completely are acknowledged, the rest
// fail retryably.
func TestWriteFailure(t *testing.T) {
	t.Parallel()
	var probe bytes.Buffer
	recs := []*outbox.Record{
		sinktest.NewRecord("t", "k", []byte(`{"n":1}`)),
		sinktest.NewRecord("t", "k", []byte(`{"n":2}`)),
		sinktest.NewRecord("t", "k", []byte(`{"n":3}`)),
	}
	stdout.New(stdout.Config{Writer: &probe}).Publish(context.Background(), recs[:1])
	first := probe.Len()

	w := &failingWriter{limit: first + 5} // the first line and part of the second
	res := stdout.New(stdout.Config{Writer: w}).Publish(context.Background(), recs)
	if res[0] != nil {
		t.Errorf("fully written message failed: %v", res[0])
	}
	for i := 1; i < 3; i++ {
		if res[i] == nil || sink.IsPermanent(res[i]) || !strings.Contains(res[i].Error(), "disk full") {
			t.Errorf("message %d: %v, want a retryable write error", i, res[i])
		}
	}
}

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

func TestShortWrite(t *testing.T) {
	t.Parallel()
	res := stdout.New(stdout.Config{Writer: shortWriter{}}).Publish(context.Background(),
		[]*outbox.Record{sinktest.NewRecord("t", "", []byte("{}"))})
	if !errors.Is(res[0], io.ErrShortWrite) {
		t.Errorf("short write: %v, want io.ErrShortWrite", res[0])
	}
}

// TestConcurrentLinesIntact: concurrent batches never interleave within a line.
func TestConcurrentLinesIntact(t *testing.T) {
	t.Parallel()
	ls := newLineStream()
	s := stdout.New(stdout.Config{Writer: ls})
	var wg sync.WaitGroup
	const workers, per = 8, 50
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var recs []*outbox.Record
			for i := 0; i < per; i++ {
				recs = append(recs, sinktest.NewRecord("t", "k", bytes.Repeat([]byte("x"), 500)))
			}
			for _, err := range s.Publish(context.Background(), recs) {
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for i := 0; i < workers*per; i++ {
		if _, err := ls.Receive(context.Background()); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
	}
}
