package outbox

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// LogicalVersion is the version byte of the table-less message encoding written by
// AppendLogical.
const LogicalVersion = 1

// DefaultLogicalPrefix is the logical decoding message prefix used when none is configured.
// The relay's WAL source reads only messages with its configured prefix.
const DefaultLogicalPrefix = "outbox"

// ErrMalformedLogical is wrapped by ParseLogical's errors: the content is not a valid
// table-less message.
var ErrMalformedLogical = errors.New("outbox: malformed logical message")

// logicalHeaderLen is the fixed part: version, message_id, created_at.
const logicalHeaderLen = 1 + 16 + 8

// createdAtOffset is the 1-based position of created_at, for SQL's overlay().
const createdAtOffset = 1 + 1 + 16

// AppendLogical appends the version-1 table-less encoding of m to dst and returns the
// extended slice. A zero createdAt is encoded as 0 ("use the commit time"). Headers are
// written sorted by name, so equal messages encode to equal bytes. AppendLogical does not
// validate m.
//
// Table-less messages travel only in PostgreSQL's write-ahead log: each one is a
// transactional logical decoding message (pg_logical_emit_message) with the prefix the relay
// is configured with (default "outbox"). Its content is binary; every integer is big-endian
// and every string is UTF-8 preceded by its byte length as a uint32:
//
//	offset  size     field
//	0       1        version: 0x01
//	1       16       message_id: the UUID's 16 bytes (RFC 9562 order)
//	17      8        created_at: int64 microseconds since 1970-01-01 UTC; 0 means "use the
//	                 transaction's commit time"
//	25      4+n      topic (required, non-empty)
//	        4+n      key (empty: no ordering key)
//	        4+n      type (empty: same as topic)
//	        4        header count h
//	        h×(4+n   header name
//	           4+n)  header value
//	        4+n      payload (any bytes)
//
// Nothing may follow the payload, and header names must be distinct. A decoder refuses any
// other version byte, so the format can evolve. Writers in other languages can build it with
// any byte buffer — or in SQL:
//
//	SELECT pg_logical_emit_message(true, 'outbox',
//	    '\x01'::bytea || uuid_send(gen_random_uuid())
//	    || int8send((extract(epoch FROM now()) * 1000000)::int8)
//	    || int4send(octet_length(convert_to('orders.created', 'UTF8'))) || convert_to('orders.created', 'UTF8')
//	    || int4send(5) || convert_to('o-123', 'UTF8')   -- key
//	    || int4send(0)                                  -- type: same as topic
//	    || int4send(0)                                  -- no headers
//	    || int4send(octet_length(payload)) || payload);
func AppendLogical(dst []byte, m *Message, createdAt time.Time) []byte {
	dst = append(dst, LogicalVersion)
	dst = append(dst, m.ID[:]...)
	var us int64
	if !createdAt.IsZero() {
		us = createdAt.UnixMicro()
	}
	dst = binary.BigEndian.AppendUint64(dst, uint64(us))
	dst = appendString(dst, m.Topic)
	dst = appendString(dst, m.Key)
	dst = appendString(dst, m.Type)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(m.Headers)))
	if len(m.Headers) > 0 {
		names := make([]string, 0, len(m.Headers))
		for name := range m.Headers {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			dst = appendString(dst, name)
			dst = appendString(dst, m.Headers[name])
		}
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(m.Payload)))
	return append(dst, m.Payload...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}

// ParseLogical decodes a table-less message (see AppendLogical). The returned Record has
// Seq and Attempts zero, and CreatedAt zero when the writer left it to the commit time. The
// record does not alias data. Errors wrap ErrMalformedLogical.
func ParseLogical(data []byte) (Record, error) {
	var r Record
	if len(data) == 0 {
		return r, fmt.Errorf("%w: empty", ErrMalformedLogical)
	}
	if data[0] != LogicalVersion {
		return r, fmt.Errorf("%w: unknown version %d", ErrMalformedLogical, data[0])
	}
	if len(data) < logicalHeaderLen {
		return r, fmt.Errorf("%w: %d bytes, shorter than the fixed header", ErrMalformedLogical, len(data))
	}
	copy(r.ID[:], data[1:17])
	if us := int64(binary.BigEndian.Uint64(data[17:25])); us != 0 {
		r.CreatedAt = time.UnixMicro(us).UTC()
	}
	d := logicalDecoder{buf: data[logicalHeaderLen:]}
	r.Topic = d.text("topic")
	r.Key = d.text("key")
	r.Type = d.text("type")
	n := d.uint32("header count")
	if d.err == nil && uint64(n)*8 > uint64(len(d.buf)) {
		d.fail("header count %d exceeds the remaining %d bytes", n, len(d.buf))
	}
	if d.err == nil && n > 0 {
		r.Headers = make(map[string]string, n)
		for range n {
			name := d.text("header name")
			value := d.text("header value")
			if d.err != nil {
				break
			}
			if _, dup := r.Headers[name]; dup {
				d.fail("duplicate header %q", name)
				break
			}
			r.Headers[name] = value
		}
	}
	r.Payload = d.bytes("payload")
	if d.err == nil && len(d.buf) > 0 {
		d.fail("%d bytes after the payload", len(d.buf))
	}
	if d.err == nil && r.Topic == "" {
		d.fail("empty topic")
	}
	if d.err != nil {
		return Record{}, d.err
	}
	if r.Payload == nil {
		r.Payload = []byte{}
	}
	return r, nil
}

type logicalDecoder struct {
	buf []byte
	err error
}

func (d *logicalDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrMalformedLogical, fmt.Sprintf(format, args...))
	}
}

func (d *logicalDecoder) uint32(what string) uint32 {
	if d.err != nil {
		return 0
	}
	if len(d.buf) < 4 {
		d.fail("truncated at %s", what)
		return 0
	}
	v := binary.BigEndian.Uint32(d.buf)
	d.buf = d.buf[4:]
	return v
}

func (d *logicalDecoder) bytes(what string) []byte {
	n := d.uint32(what + " length")
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(d.buf)) {
		d.fail("%s length %d exceeds the remaining %d bytes", what, n, len(d.buf))
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return slices.Clone(b)
}

func (d *logicalDecoder) text(what string) string {
	n := d.uint32(what + " length")
	if d.err != nil {
		return ""
	}
	if uint64(n) > uint64(len(d.buf)) {
		d.fail("%s length %d exceeds the remaining %d bytes", what, n, len(d.buf))
		return ""
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	if !utf8.ValidString(s) {
		d.fail("%s is not valid UTF-8", what)
		return ""
	}
	return s
}

// LogicalWriterConfig configures a LogicalWriter. The zero value writes with prefix
// DefaultLogicalPrefix.
type LogicalWriterConfig struct {
	// Prefix is the logical decoding message prefix; the relay's WAL source must be
	// configured with the same one (its MessagePrefix). Default DefaultLogicalPrefix.
	Prefix string
	// MaxPayloadBytes refuses larger payloads. Default DefaultMaxPayloadBytes.
	MaxPayloadBytes int
}

// LogicalWriter writes messages into PostgreSQL's WAL only (table-less mode), inside the
// caller's transaction. It is safe for concurrent use.
type LogicalWriter struct {
	prefix     string
	maxPayload int
}

// NewLogicalWriter validates cfg and returns a LogicalWriter.
func NewLogicalWriter(cfg LogicalWriterConfig) (*LogicalWriter, error) {
	cfg.Prefix = cmp.Or(cfg.Prefix, DefaultLogicalPrefix)
	cfg.MaxPayloadBytes = cmp.Or(cfg.MaxPayloadBytes, DefaultMaxPayloadBytes)
	if err := CheckLogicalPrefix(cfg.Prefix); err != nil {
		return nil, &ConfigError{Field: "prefix", Reason: err.Error()}
	}
	if cfg.MaxPayloadBytes < 0 {
		return nil, &ConfigError{Field: "max_payload_bytes", Reason: "must not be negative"}
	}
	return &LogicalWriter{prefix: cfg.Prefix, maxPayload: cfg.MaxPayloadBytes}, nil
}

// CheckLogicalPrefix reports why prefix cannot be a logical message prefix, or nil.
func CheckLogicalPrefix(prefix string) error {
	switch {
	case prefix == "":
		return errors.New("must not be empty")
	case len(prefix) > 200:
		return errors.New("longer than 200 bytes")
	}
	if reason := checkText(prefix); reason != "" {
		return errors.New(reason)
	}
	return nil
}

// Prefix returns the logical decoding message prefix the writer uses.
func (w *LogicalWriter) Prefix() string { return w.prefix }

// EnqueueLogical writes msgs into the WAL of a PostgreSQL database inside tx, with the
// default prefix. See LogicalWriter.Enqueue.
func EnqueueLogical(ctx context.Context, tx Tx, msgs ...Message) error {
	w, err := NewLogicalWriter(LogicalWriterConfig{})
	if err != nil {
		return err
	}
	return w.Enqueue(ctx, tx, msgs...)
}

// Enqueue validates msgs (as Writer.Enqueue does) and writes each one, in order, as a
// transactional logical decoding message (pg_logical_emit_message) inside tx, in one round
// trip. Nothing is written to any table: the relay's WAL source in "logical" mode reads the
// messages from the replication stream after tx commits, and never sees them if it rolls back.
// created_at is the transaction's start time (now()), as in the outbox table.
//
// Messages with a zero ID get a new UUIDv7, written back into msgs. tx is a pgx.Tx or a
// *sql.Tx of a PostgreSQL database (wal_level = logical).
func (w *LogicalWriter) Enqueue(ctx context.Context, tx Tx, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	for i := range msgs {
		if err := msgs[i].validate(i, w.maxPayload); err != nil {
			return err
		}
	}
	for i := range msgs {
		if msgs[i].ID == uuid.Nil {
			msgs[i].ID = NewID()
		}
	}
	contents := make([][]byte, len(msgs))
	for i := range msgs {
		// created_at is filled in by the database (now()), see logicalCreatedAt.
		contents[i] = AppendLogical(nil, &msgs[i], time.Time{})
	}
	switch tx := tx.(type) {
	case pgxTx:
		if _, err := tx.Exec(ctx, logicalEmitPgx, w.prefix, contents); err != nil {
			return fmt.Errorf("outbox: emitting %d logical messages: %w", len(msgs), err)
		}
		return nil
	case sqlTx:
		for start := 0; start < len(contents); start += sqlChunk {
			chunk := contents[start:min(start+sqlChunk, len(contents))]
			query, args := logicalEmitSQL(w.prefix, chunk)
			if _, err := tx.ExecContext(ctx, query, args...); err != nil {
				return fmt.Errorf("outbox: emitting %d logical messages: %w", len(chunk), err)
			}
		}
		return nil
	default:
		return fmt.Errorf("%w: %T (want a transaction: pgx.Tx or *sql.Tx; a pool or connection would commit the messages on their own)", ErrUnsupportedTx, tx)
	}
}

// logicalCreatedAt puts the transaction's start time into created_at, so table-less messages
// carry the database clock like rows of the outbox table do. ORDER BY ord: the planner
// evaluates volatile target-list functions after the sort, so the messages enter the WAL in
// Enqueue order.
var logicalCreatedAt = "overlay(u.m placing int8send((extract(epoch FROM now()) * 1000000)::int8) from " +
	strconv.Itoa(createdAtOffset) + " for 8)"

var logicalEmitPgx = "SELECT pg_logical_emit_message(true, $1::text, " + logicalCreatedAt + ") " +
	"FROM unnest($2::bytea[]) WITH ORDINALITY AS u(m, ord) ORDER BY u.ord"

// logicalEmitSQL is the database/sql form: a VALUES list, which every driver can bind.
func logicalEmitSQL(prefix string, contents [][]byte) (string, []any) {
	var b strings.Builder
	b.WriteString("SELECT pg_logical_emit_message(true, $1::text, ")
	b.WriteString(logicalCreatedAt)
	b.WriteString(") FROM (VALUES ")
	args := make([]any, 0, len(contents)+1)
	args = append(args, prefix)
	for i, c := range contents {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "(%d, $%d::bytea)", i, i+2)
		args = append(args, c)
	}
	b.WriteString(") AS u(ord, m) ORDER BY u.ord")
	return b.String(), args
}
