package wal

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect"
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
	v, _ := get(r.messageID, "message_id")
	id, err := dialect.ParseMessageID(v)
	if err != nil {
		errs = append(errs, err)
	}
	rec.ID = id
	text := func(i int, name string) string {
		v, ok := get(i, name)
		if !ok {
			return ""
		}
		s, err := dialect.Text(name, v)
		if err != nil {
			errs = append(errs, err)
		}
		return s
	}
	rec.Topic = text(r.topic, "topic")
	if rec.Topic == "" {
		errs = append(errs, errors.New("topic is empty"))
	}
	rec.Key = text(r.key, "key")
	rec.Type = text(r.typ, "type")
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
		h, err := dialect.DecodeHeaders(v)
		if err != nil {
			errs = append(errs, err)
		}
		rec.Headers = h
	}
	if v, ok := get(r.createdAt, "created_at"); ok {
		var t time.Time
		if err := tm.Scan(pgtype.TimestamptzOID, pgtype.TextFormatCode, v, &t); err != nil {
			errs = append(errs, dialect.Unreadable("created_at", v, err))
		}
		rec.CreatedAt = t
	}
	if v, ok := get(r.attempts, "attempts"); ok {
		n, err := strconv.ParseInt(string(v), 10, 64)
		if err == nil {
			rec.Attempts, err = dialect.Attempts(n)
		} else {
			err = dialect.Unreadable("attempts", v, err)
		}
		if err != nil {
			errs = append(errs, err)
		}
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
