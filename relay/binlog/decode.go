package binlog

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
)

// layout maps the outbox table's columns, found by name, to record fields: their order and
// any extra columns do not matter.
type layout struct {
	ncols int
	// Column positions, -1 when absent.
	id, messageID, topic, key, typ, payload, headers, createdAt, attempts int
}

func newLayout(names []string) *layout {
	l := &layout{ncols: len(names), id: -1, messageID: -1, topic: -1, key: -1, typ: -1, payload: -1, headers: -1, createdAt: -1, attempts: -1}
	for i, n := range names {
		switch strings.ToLower(n) {
		case "id":
			l.id = i
		case "message_id":
			l.messageID = i
		case "topic":
			l.topic = i
		case "key":
			l.key = i
		case "type":
			l.typ = i
		case "payload":
			l.payload = i
		case "headers":
			l.headers = i
		case "created_at":
			l.createdAt = i
		case "attempts":
			l.attempts = i
		}
	}
	return l
}

// missing names a required column the table lacks, or "".
func (l *layout) missing() string {
	switch {
	case l.id < 0:
		return "id"
	case l.messageID < 0:
		return "message_id"
	case l.topic < 0:
		return "topic"
	case l.payload < 0:
		return "payload"
	}
	return ""
}

// decodeRow turns an inserted row, as go-mysql decodes it, into a record: the same fields the
// mysql store's claims read (a NULL key is no key, headers a JSON object). Values are copied:
// the record outlives the event. commit is the transaction's time, used when created_at is
// unreadable. On error the record holds what could be decoded (for the dead-letter table).
func (l *layout) decodeRow(row []any, commit time.Time) (outbox.Record, error) {
	var rec outbox.Record
	if len(row) != l.ncols {
		return rec, fmt.Errorf("row has %d columns, the table %d", len(row), l.ncols)
	}
	var errs []error
	if n, ok := toInt(row[l.id]); ok {
		rec.Seq = n
	} else {
		errs = append(errs, fmt.Errorf("id: unexpected value %T", row[l.id]))
	}
	if b, ok := dialect.AnyBytes(row[l.messageID]); ok {
		id, err := dialect.ParseMessageID(b)
		if err != nil {
			errs = append(errs, err)
		}
		rec.ID = id
	} else {
		errs = append(errs, dialect.Unreadable("message_id", nil, fmt.Errorf("unexpected value %T", row[l.messageID])))
	}
	text := func(i int, name string) string {
		if i < 0 {
			return ""
		}
		v, ok := toString(row[i]) // NULL: ""
		if !ok {
			return ""
		}
		s, err := dialect.Text(name, []byte(v))
		if err != nil {
			errs = append(errs, err)
		}
		return s
	}
	rec.Topic = text(l.topic, "topic")
	if rec.Topic == "" {
		errs = append(errs, errors.New("topic is empty"))
	}
	rec.Key = text(l.key, "key")
	rec.Type = text(l.typ, "type")
	rec.Payload = toBytes(row[l.payload])
	if rec.Payload == nil {
		rec.Payload = []byte{}
	}
	if l.headers >= 0 {
		if raw := toBytes(row[l.headers]); raw != nil {
			h, err := dialect.DecodeHeaders(raw)
			if err != nil {
				errs = append(errs, err)
			}
			rec.Headers = h
		}
	}
	if l.createdAt >= 0 {
		if rec.CreatedAt = toTime(row[l.createdAt]); rec.CreatedAt.IsZero() {
			v, _ := toString(row[l.createdAt])
			errs = append(errs, dialect.Unreadable("created_at", []byte(v), errors.New("not a valid date")))
		}
	}
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = commit
	}
	if l.attempts >= 0 {
		n, ok := toInt(row[l.attempts])
		if !ok {
			errs = append(errs, dialect.Unreadable("attempts", nil, fmt.Errorf("unexpected value %T", row[l.attempts])))
		} else if a, err := dialect.Attempts(n); err != nil {
			errs = append(errs, err)
		} else {
			rec.Attempts = a
		}
	}
	return rec, errors.Join(errs...)
}

func toInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int64:
		return v, true
	case int32:
		return int64(v), true
	case int16:
		return int64(v), true
	case int8:
		return int64(v), true
	case int:
		return int64(v), true
	case uint64:
		return int64(v), v <= 1<<63-1
	case uint32:
		return int64(v), true
	case uint16:
		return int64(v), true
	case uint8:
		return int64(v), true
	}
	return 0, false
}

func toString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return strings.Clone(v), true
	case []byte:
		return string(v), true
	}
	return "", false
}

func toBytes(v any) []byte {
	switch v := v.(type) {
	case []byte:
		return append([]byte{}, v...)
	case string:
		return []byte(v)
	}
	return nil
}

// toTime reads a DATETIME(6) in UTC: go-mysql gives a time.Time (ParseTime), or a string for
// zero dates.
func toTime(v any) time.Time {
	switch v := v.(type) {
	case time.Time:
		return v.UTC()
	case string:
		t, err := time.Parse("2006-01-02 15:04:05.999999", v)
		if err == nil {
			return t
		}
	}
	return time.Time{}
}
