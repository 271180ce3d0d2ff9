package dialect

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/outboxgo/outbox"
)

// ErrUnreadable is wrapped by every ColumnError: a row the database accepted but no relay can
// turn into a message. Stores and log sources move such rows to the dead-letter table, with
// the error as the reason, instead of failing every claim that reads them.
var ErrUnreadable = errors.New("unreadable row")

// MaxAttempts is the largest attempts value a row may hold: larger (or negative) counts are
// refused as unreadable, so that counting one more attempt never overflows a column.
const MaxAttempts = 1 << 30

// ColumnError says which column of a row could not be decoded, and why.
type ColumnError struct {
	Column string
	// Value is the column's value as text, shortened and made printable ("" for NULL).
	Value string
	Err   error
}

func (e *ColumnError) Error() string {
	return fmt.Sprintf("unreadable row: column %s %s: %v", e.Column, e.Value, e.Err)
}

// Unwrap returns ErrUnreadable and the cause.
func (e *ColumnError) Unwrap() []error { return []error{ErrUnreadable, e.Err} }

// Unreadable returns the ColumnError of column, with value raw quoted and shortened.
func Unreadable(column string, raw []byte, err error) *ColumnError {
	v := "NULL"
	if raw != nil {
		v = Printable(raw, 64)
	}
	return &ColumnError{Column: column, Value: v, Err: err}
}

// Printable quotes b as a Go string, cut to at most n bytes of input.
func Printable(b []byte, n int) string {
	if len(b) > n {
		return fmt.Sprintf("%q…", b[:n])
	}
	return fmt.Sprintf("%q", b)
}

var errInvalidUTF8 = errors.New("not valid UTF-8")

// ParseMessageID reads a message_id column (any form uuid.Parse accepts; stores write the
// canonical lower-case hyphenated form).
func ParseMessageID(raw []byte) (uuid.UUID, error) {
	if raw == nil {
		return uuid.UUID{}, Unreadable("message_id", nil, errors.New("is NULL"))
	}
	id, err := uuid.ParseBytes(raw)
	if err != nil {
		return uuid.UUID{}, Unreadable("message_id", raw, err)
	}
	return id, nil
}

// Text reads a text column: it must be valid UTF-8 (sinks and brokers need text).
func Text(column string, raw []byte) (string, error) {
	if !utf8.Valid(raw) {
		return "", Unreadable(column, raw, errInvalidUTF8)
	}
	return string(raw), nil
}

// Attempts checks an attempts column: 0 to MaxAttempts.
func Attempts(n int64) (int, error) {
	if n < 0 || n > MaxAttempts {
		return 0, Unreadable("attempts", fmt.Append(nil, n), fmt.Errorf("out of range 0..%d", MaxAttempts))
	}
	return int(n), nil
}

// DecodeHeaders reads a headers column: a JSON object (empty or {} gives nil). String values
// are taken as they are; other values (rows written by hand or by other languages) are kept
// as their JSON text. Anything else — invalid JSON, JSON that is not an object, invalid
// UTF-8 — is a ColumnError.
func DecodeHeaders(raw []byte) (map[string]string, error) {
	if len(raw) == 0 || string(raw) == "{}" {
		return nil, nil
	}
	if !utf8.Valid(raw) {
		return nil, Unreadable("headers", raw, errInvalidUTF8)
	}
	var generic map[string]json.RawMessage
	if err := json.Unmarshal(raw, &generic); err != nil {
		return nil, Unreadable("headers", raw, err)
	}
	if generic == nil {
		return nil, Unreadable("headers", raw, errors.New("not a JSON object"))
	}
	h := make(map[string]string, len(generic))
	for k, v := range generic {
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			h[k] = s
		} else {
			h[k] = string(v)
		}
	}
	return h, nil
}

// SalvageReason is the reason of a dead letter whose row could not be copied whole into the
// dead-letter table (copyErr): the row's reason, what went wrong, and the columns stored as
// placeholders, with their original values as text.
func SalvageReason(reason string, copyErr error, lost []string, values []string) string {
	var b strings.Builder
	b.WriteString(reason)
	fmt.Fprintf(&b, "; the row could not be copied into the dead-letter table (%v): stored placeholders for", copyErr)
	for i, c := range lost {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %s (was %s)", c, Printable([]byte(values[i]), 200))
	}
	return b.String()
}

// RawRow is a row of an outbox table as database/sql scanned it into `any` values, for
// DecodeRow. CreatedAt is in unix microseconds.
type RawRow struct {
	Seq                                           int64
	MessageID, Topic, Key, Type, Payload, Headers any
	CreatedAt, Attempts                           any
}

// DecodeRow turns a RawRow into a record. Every column is checked; the error (a ColumnError)
// names the first that cannot be decoded, and the record then holds what could be (for the
// dead-letter table).
func DecodeRow(raw RawRow) (outbox.Record, error) {
	r := outbox.Record{Seq: raw.Seq}
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	text := func(column string, v any, nullable bool) string {
		b, ok := AnyBytes(v)
		if !ok {
			if v != nil || !nullable {
				note(Unreadable(column, nil, fmt.Errorf("unexpected value %T", v)))
			}
			return ""
		}
		s, err := Text(column, b)
		note(err)
		return s
	}
	mid, _ := AnyBytes(raw.MessageID)
	id, err := ParseMessageID(mid)
	note(err)
	r.ID = id
	r.Topic = text("topic", raw.Topic, false)
	r.Key = text("key", raw.Key, true)
	r.Type = text("type", raw.Type, false)
	if p, ok := AnyBytes(raw.Payload); ok {
		r.Payload = bytes.Clone(p)
	}
	if r.Payload == nil {
		r.Payload = []byte{}
	}
	if h, ok := AnyBytes(raw.Headers); ok {
		r.Headers, err = DecodeHeaders(h)
		note(err)
	} else if raw.Headers != nil {
		note(Unreadable("headers", nil, fmt.Errorf("unexpected value %T", raw.Headers)))
	}
	us, err := AnyInt("created_at", raw.CreatedAt)
	if raw.CreatedAt == nil {
		// Stores read it as an expression that is NULL for dates it cannot convert.
		err = Unreadable("created_at", nil, errors.New("is NULL or not a valid date"))
	}
	note(err)
	if err == nil {
		if r.CreatedAt = time.UnixMicro(us).UTC(); r.CreatedAt.Year() < 1 || r.CreatedAt.Year() > 9999 {
			note(Unreadable("created_at", fmt.Append(nil, us), errors.New("out of range (years 1 to 9999)")))
			r.CreatedAt = time.Time{}
		}
	}
	n, err := AnyInt("attempts", raw.Attempts)
	note(err)
	if err == nil {
		r.Attempts, err = Attempts(n)
		note(err)
	}
	if len(errs) > 0 {
		return r, errs[0]
	}
	return r, nil
}

// AnyBytes returns the bytes of a scanned text or blob value (numbers as their decimal text);
// ok is false for NULL and other types.
func AnyBytes(v any) (b []byte, ok bool) {
	switch v := v.(type) {
	case []byte:
		if v == nil {
			return []byte{}, true
		}
		return v, true
	case string:
		return []byte(v), true
	case int64:
		return strconv.AppendInt(nil, v, 10), true
	case float64:
		return strconv.AppendFloat(nil, v, 'g', -1, 64), true
	}
	return nil, false
}

// AnyInt reads a scanned integer column: an integer, or decimal text of one.
func AnyInt(column string, v any) (int64, error) {
	switch v := v.(type) {
	case int64:
		return v, nil
	case nil:
		return 0, Unreadable(column, nil, errors.New("is NULL"))
	}
	b, ok := AnyBytes(v)
	if !ok {
		return 0, Unreadable(column, nil, fmt.Errorf("unexpected value %T", v))
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return 0, Unreadable(column, b, errors.New("not an integer"))
	}
	return n, nil
}

// ScanTopics reads the rows of a per-topic failures query (topic, failing count, last error)
// for Stats.Topics; it takes QueryContext's results as they are.
func ScanTopics(rows *sql.Rows, err error) ([]TopicErrors, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []TopicErrors
	for rows.Next() {
		var (
			te   TopicErrors
			last sql.NullString
		)
		if err := rows.Scan(&te.Topic, &te.Failing, &last); err != nil {
			return nil, err
		}
		te.LastError = last.String
		out = append(out, te)
	}
	return out, rows.Err()
}
