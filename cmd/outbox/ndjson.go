package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
)

// ndjsonMessage is one line of 'enqueue --ndjson': the flags of the single-message enqueue as
// JSON fields, the payload as text (data), as a JSON value kept as written (payload) or as
// base64 (payload_base64), at most one of them.
type ndjsonMessage struct {
	ID            string            `json:"id"`
	Topic         string            `json:"topic"`
	Key           string            `json:"key"`
	Type          string            `json:"type"`
	Headers       map[string]string `json:"headers"`
	Data          *string           `json:"data"`
	Payload       json.RawMessage   `json:"payload"`
	PayloadBase64 *string           `json:"payload_base64"`
}

// ndjsonMaxLine is the longest line 'enqueue --ndjson' reads: a payload of the default limit
// in base64, with room for the other fields.
const ndjsonMaxLine = outbox.DefaultMaxPayloadBytes*4/3 + 64<<10

// lineError is a line of an NDJSON file that is not a message.
type lineError struct {
	line  int
	field string // "" when the line is not JSON at all
	err   error
}

func (e *lineError) Error() string {
	if e.field == "" {
		return fmt.Sprintf("line %d: %v", e.line, e.err)
	}
	return fmt.Sprintf("line %d: field %q: %v", e.line, e.field, e.err)
}

func (e *lineError) Unwrap() error { return e.err }

// parseNDJSONLine reads one line into a message.
func parseNDJSONLine(n int, line []byte) (outbox.Message, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var m ndjsonMessage
	if err := dec.Decode(&m); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return outbox.Message{}, &lineError{line: n, field: te.Field, err: fmt.Errorf("want a %s, got a JSON %s", te.Type, te.Value)}
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return outbox.Message{}, &lineError{line: n, field: strings.Trim(name, `"`), err: errors.New("unknown field (want id, topic, key, type, headers, data, payload or payload_base64)")}
		}
		return outbox.Message{}, &lineError{line: n, err: fmt.Errorf("not a JSON object: %w", err)}
	}
	if dec.More() {
		return outbox.Message{}, &lineError{line: n, err: errors.New("more than one JSON value on the line")}
	}
	msg := outbox.Message{Topic: m.Topic, Key: m.Key, Type: m.Type, Headers: m.Headers}
	if m.Topic == "" {
		return outbox.Message{}, &lineError{line: n, field: "topic", err: errors.New("required")}
	}
	if m.ID != "" {
		id, err := uuid.Parse(m.ID)
		if err != nil {
			return outbox.Message{}, &lineError{line: n, field: "id", err: fmt.Errorf("not a UUID: %w", err)}
		}
		msg.ID = id
	} else {
		msg.ID = outbox.NewID()
	}
	set := 0
	if m.Data != nil {
		set++
		msg.Payload = []byte(*m.Data)
	}
	if m.Payload != nil {
		set++
		msg.Payload = []byte(m.Payload)
	}
	if m.PayloadBase64 != nil {
		set++
		b, err := base64.StdEncoding.DecodeString(*m.PayloadBase64)
		if err != nil {
			return outbox.Message{}, &lineError{line: n, field: "payload_base64", err: fmt.Errorf("not base64: %w", err)}
		}
		msg.Payload = b
	}
	if set > 1 {
		return outbox.Message{}, &lineError{line: n, field: "payload", err: errors.New("give one of data, payload and payload_base64")}
	}
	return msg, nil
}

// ndjsonLines calls fn with each line of r after the first skip (numbered from 1, without
// its end of line), skipping empty ones.
func ndjsonLines(r io.Reader, skip int, fn func(n int, line []byte) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), ndjsonMaxLine)
	n := 0
	for sc.Scan() {
		n++
		if n <= skip {
			continue
		}
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &lineError{line: n + 1, err: fmt.Errorf("longer than %d bytes", ndjsonMaxLine)}
		}
		return fmt.Errorf("reading line %d: %w", n+1, err)
	}
	return nil
}

// countNDJSON counts the messages (non-empty lines after the first skip) of the file at path,
// the progress's total.
func countNDJSON(path string, skip int) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var total int64
	err = ndjsonLines(f, skip, func(int, []byte) error { total++; return nil })
	return total, err
}

// enqueueResult is how far an 'enqueue --ndjson' got.
type enqueueResult struct {
	messages int64 // committed
	lastLine int   // the last line committed (0: none)
}

// enqueueNDJSON enqueues the messages of r, batch per transaction, after the first skip lines.
// A line that is not a message, or a batch the store refuses, stops it: the batches before
// are committed, nothing of that one. The result says how far it got, also on error.
func enqueueNDJSON(ctx context.Context, st dialect.Admin, r io.Reader, skip, batch int, added func(int64)) (enqueueResult, error) {
	res := enqueueResult{lastLine: skip}
	msgs := make([]outbox.Message, 0, batch)
	lines := make([]int, 0, batch)
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		if err := st.Enqueue(ctx, msgs...); err != nil {
			var ve *outbox.ValidationError
			if errors.As(err, &ve) && ve.Index >= 0 && ve.Index < len(lines) {
				return &lineError{line: lines[ve.Index], field: ve.Field, err: errors.New(ve.Reason)}
			}
			return fmt.Errorf("enqueueing lines %d to %d: %w", lines[0], lines[len(lines)-1], err)
		}
		res.messages += int64(len(msgs))
		res.lastLine = lines[len(lines)-1]
		added(int64(len(msgs)))
		msgs, lines = msgs[:0], lines[:0]
		return nil
	}
	err := ndjsonLines(r, skip, func(n int, line []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		msg, err := parseNDJSONLine(n, line)
		if err != nil {
			return err
		}
		msgs, lines = append(msgs, msg), append(lines, n)
		if len(msgs) == batch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return res, err
}
