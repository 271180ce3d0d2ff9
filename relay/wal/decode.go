package wal

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outboxgo/outbox"
)

// relation maps the columns of a table, as announced by a pgoutput Relation message, to the
// outbox record fields. Columns are found by name, so their order and any extra columns do
// not matter.
type relation struct {
	outbox bool // the configured outbox table
	ncols  int
	// Column positions, -1 when absent.
	id, messageID, topic, key, typ, payload, headers, createdAt, attempts int
}

func newRelation(m *pglogrepl.RelationMessage, namespace, name string) *relation {
	r := &relation{
		outbox: m.Namespace == namespace && m.RelationName == name,
		ncols:  len(m.Columns),
		id:     -1, messageID: -1, topic: -1, key: -1, typ: -1, payload: -1, headers: -1, createdAt: -1, attempts: -1,
	}
	for i, c := range m.Columns {
		switch c.Name {
		case "id":
			r.id = i
		case "message_id":
			r.messageID = i
		case "topic":
			r.topic = i
		case "key":
			r.key = i
		case "type":
			r.typ = i
		case "payload":
			r.payload = i
		case "headers":
			r.headers = i
		case "created_at":
			r.createdAt = i
		case "attempts":
			r.attempts = i
		}
	}
	return r
}

// decodeRow turns an inserted row, in pgoutput's text format, into a record. On error the
// record holds what could be decoded (for the dead-letter table).
func (r *relation) decodeRow(cols []*pglogrepl.TupleDataColumn, tm *pgtype.Map) (outbox.Record, error) {
	var rec outbox.Record
	if len(cols) != r.ncols {
		return rec, fmt.Errorf("row has %d columns, relation has %d", len(cols), r.ncols)
	}
	if r.id < 0 || r.messageID < 0 || r.topic < 0 || r.payload < 0 {
		return rec, errors.New("table lacks one of the columns id, message_id, topic, payload")
	}
	var errs []error
	get := func(i int, name string) ([]byte, bool) {
		if i < 0 {
			return nil, false
		}
		c := cols[i]
		switch c.DataType {
		case pglogrepl.TupleDataTypeText:
			return c.Data, true
		case pglogrepl.TupleDataTypeNull:
			return nil, false
		default:
			errs = append(errs, fmt.Errorf("%s: unexpected tuple data type %q", name, c.DataType))
			return nil, false
		}
	}
	if v, ok := get(r.id, "id"); ok {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("id: %w", err))
		}
		rec.Seq = n
	} else {
		errs = append(errs, errors.New("id is null"))
	}
	if v, ok := get(r.messageID, "message_id"); ok {
		id, err := uuid.ParseBytes(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("message_id: %w", err))
		}
		rec.ID = id
	} else {
		errs = append(errs, errors.New("message_id is null"))
	}
	if v, ok := get(r.topic, "topic"); ok {
		rec.Topic = string(v)
	}
	if rec.Topic == "" {
		errs = append(errs, errors.New("topic is empty"))
	}
	if v, ok := get(r.key, "key"); ok {
		rec.Key = string(v)
	}
	if v, ok := get(r.typ, "type"); ok {
		rec.Type = string(v)
	}
	if v, ok := get(r.payload, "payload"); ok {
		p, err := decodeBytea(v, tm)
		if err != nil {
			errs = append(errs, fmt.Errorf("payload: %w", err))
		}
		rec.Payload = p
	}
	if rec.Payload == nil {
		rec.Payload = []byte{}
	}
	if v, ok := get(r.headers, "headers"); ok {
		h, err := decodeHeaders(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("headers: %w", err))
		}
		rec.Headers = h
	}
	if v, ok := get(r.createdAt, "created_at"); ok {
		var t time.Time
		if err := tm.Scan(pgtype.TimestamptzOID, pgtype.TextFormatCode, v, &t); err != nil {
			errs = append(errs, fmt.Errorf("created_at: %w", err))
		}
		rec.CreatedAt = t
	}
	if v, ok := get(r.attempts, "attempts"); ok {
		n, err := strconv.Atoi(string(v))
		if err != nil {
			errs = append(errs, fmt.Errorf("attempts: %w", err))
		}
		rec.Attempts = n
	}
	return rec, errors.Join(errs...)
}

// decodeBytea decodes bytea's text output: hex ("\x0a0b") as the source's session asks for,
// escape format otherwise.
func decodeBytea(v []byte, tm *pgtype.Map) ([]byte, error) {
	if len(v) >= 2 && v[0] == '\\' && v[1] == 'x' {
		out := make([]byte, hex.DecodedLen(len(v)-2))
		if _, err := hex.Decode(out, v[2:]); err != nil {
			return nil, err
		}
		return out, nil
	}
	var out []byte
	if err := tm.Scan(pgtype.ByteaOID, pgtype.TextFormatCode, v, &out); err != nil {
		return nil, err
	}
	if out == nil {
		out = []byte{}
	}
	return out, nil
}

// decodeHeaders reads the headers JSON object. Values that are not strings (rows written by
// hand or by other languages) are kept as their JSON text, as the polling relay does.
func decodeHeaders(raw []byte) (map[string]string, error) {
	if len(raw) == 0 || string(raw) == "{}" {
		return nil, nil
	}
	var generic map[string]json.RawMessage
	if err := json.Unmarshal(raw, &generic); err != nil {
		return nil, err
	}
	if generic == nil {
		return nil, errors.New("not a JSON object")
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

// headersJSON is the headers column value for the dead-letter table.
func headersJSON(h map[string]string) string {
	if len(h) == 0 {
		return "{}"
	}
	b, err := json.Marshal(h)
	if err != nil { // a map[string]string always marshals
		return "{}"
	}
	return string(b)
}

// storable makes text fit a PostgreSQL text column: valid UTF-8 without NUL, at most about
// 2000 bytes.
func storable(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	if len(s) > 2000 {
		cut := 2000
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
