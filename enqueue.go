package outbox

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outboxgo/outbox/internal/envelope"
	"github.com/outboxgo/outbox/internal/sqlident"
)

// Dialect names the SQL dialect of the database holding the outbox table.
type Dialect string

// Supported dialects.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
	MySQL    Dialect = "mysql" // MySQL 8 and MariaDB 10.6+
)

// DefaultTable is the outbox table name used when none is configured.
const DefaultTable = "outbox"

// Tx is the transaction Enqueue writes into. It must be one of:
//   - a pgx transaction (pgx.Tx: anything with pgx's Exec and Commit), PostgreSQL only;
//   - a *sql.Tx (anything with ExecContext and Commit), for any dialect.
//
// Enqueue returns ErrUnsupportedTx for anything else, pools and connections included: the
// messages must commit or roll back with the business data.
type Tx any

// pgxTx is what Enqueue needs of a pgx transaction. Requiring Commit keeps out pools and
// connections, on which the insert would commit by itself, outside the business transaction.
type pgxTx interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Commit(ctx context.Context) error
}

// sqlTx is what Enqueue needs of a database/sql transaction (*sql.Tx); *sql.DB and *sql.Conn
// are refused for the same reason.
type sqlTx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	Commit() error
}

// WriterConfig configures a Writer. The zero value writes to table "outbox" in PostgreSQL.
type WriterConfig struct {
	// Dialect of the database. Default Postgres.
	Dialect Dialect
	// Table is the outbox table, optionally schema-qualified ("app.outbox"). Default "outbox".
	Table string
	// MaxPayloadBytes refuses larger payloads. Default DefaultMaxPayloadBytes.
	MaxPayloadBytes int
	// Hooks are called around every Enqueue of the Writer (tracing: package tracing's
	// Producer starts a span per message and adds its trace context to the headers).
	Hooks []EnqueueHook
}

// EnqueueHook is called by Writer.Enqueue with the valid messages, their IDs set, before they
// are inserted: it may replace a message's Headers (never change the map the caller gave, a
// copy: the new map is written back into the caller's slice, as the IDs are). The function
// it returns, if not nil, is called with the insert's error. The messages are validated
// again after the hooks.
type EnqueueHook interface {
	BeforeEnqueue(ctx context.Context, msgs []Message) (after func(err error))
}

// Writer enqueues messages into one outbox table. It is safe for concurrent use.
type Writer struct {
	dialect    Dialect
	table      sqlident.Table
	maxPayload int
	pgxInsert  string // unnest form: one statement whatever the batch size
	pgxInsert1 string // VALUES form for one message: ~15 µs less per statement than unnest
	hooks      []EnqueueHook
}

// NewWriter validates cfg and returns a Writer.
func NewWriter(cfg WriterConfig) (*Writer, error) {
	cfg.Dialect = cmp.Or(cfg.Dialect, Postgres)
	cfg.Table = cmp.Or(cfg.Table, DefaultTable)
	cfg.MaxPayloadBytes = cmp.Or(cfg.MaxPayloadBytes, DefaultMaxPayloadBytes)
	if cfg.Dialect != Postgres && cfg.Dialect != SQLite && cfg.Dialect != MySQL {
		return nil, &ConfigError{Field: "dialect", Reason: fmt.Sprintf("%q is not one of postgres, mysql, sqlite", cfg.Dialect)}
	}
	if cfg.MaxPayloadBytes < 0 {
		return nil, &ConfigError{Field: "max_payload_bytes", Reason: "must not be negative"}
	}
	t, err := sqlident.Parse(cfg.Table)
	if err != nil {
		return nil, &ConfigError{Field: "table", Reason: err.Error()}
	}
	if cfg.Dialect == SQLite && t.Schema != "" {
		return nil, &ConfigError{Field: "table", Reason: "SQLite tables cannot be schema-qualified"}
	}
	for i, h := range cfg.Hooks {
		if h == nil {
			return nil, &ConfigError{Field: fmt.Sprintf("hooks[%d]", i), Reason: "nil"}
		}
	}
	w := &Writer{dialect: cfg.Dialect, table: t, maxPayload: cfg.MaxPayloadBytes, hooks: slices.Clone(cfg.Hooks)}
	w.pgxInsert = "INSERT INTO " + t.Quoted() + " (message_id, topic, key, type, payload, headers) " +
		"SELECT m::uuid, tp, k, ty, p, h::jsonb FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::text[]) " +
		"WITH ORDINALITY AS u(m, tp, k, ty, p, h, ord) ORDER BY ord"
	w.pgxInsert1 = "INSERT INTO " + t.Quoted() + " (message_id, topic, key, type, payload, headers) " +
		"VALUES ($1::uuid, $2, $3, $4, $5, $6::jsonb)"
	return w, nil
}

// Enqueue inserts msgs into the default outbox table ("outbox") of a PostgreSQL database,
// inside tx. See Writer.Enqueue.
func Enqueue(ctx context.Context, tx Tx, msgs ...Message) error {
	w, err := NewWriter(WriterConfig{})
	if err != nil {
		return err
	}
	return w.Enqueue(ctx, tx, msgs...)
}

// Enqueue validates msgs and inserts them, in order, into the outbox table inside tx, in one
// round trip. The messages are published after tx commits and never if it rolls back.
//
// Messages with a zero ID get a new UUIDv7, written back into msgs. If any message is invalid,
// nothing is inserted and the error wraps ErrInvalidMessage (a *ValidationError).
func (w *Writer) Enqueue(ctx context.Context, tx Tx, msgs ...Message) error {
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
	if len(w.hooks) > 0 {
		return w.enqueueHooked(ctx, tx, msgs)
	}
	return w.insert(ctx, tx, msgs)
}

// enqueueHooked is Enqueue with hooks: they see the messages first, and are told the result.
func (w *Writer) enqueueHooked(ctx context.Context, tx Tx, msgs []Message) (err error) {
	for _, h := range w.hooks {
		if after := h.BeforeEnqueue(ctx, msgs); after != nil {
			defer func() { after(err) }()
		}
	}
	for i := range msgs {
		if err := msgs[i].validate(i, w.maxPayload); err != nil {
			return err
		}
	}
	return w.insert(ctx, tx, msgs)
}

// insert writes valid msgs inside tx.
func (w *Writer) insert(ctx context.Context, tx Tx, msgs []Message) error {
	switch tx := tx.(type) {
	case pgxTx:
		if w.dialect != Postgres {
			return fmt.Errorf("%w: a pgx transaction needs the postgres dialect, writer is %s", ErrUnsupportedTx, w.dialect)
		}
		return w.enqueuePgx(ctx, tx, msgs)
	case sqlTx:
		return w.enqueueSQL(ctx, tx, msgs)
	default:
		return fmt.Errorf("%w: %T (want a transaction: pgx.Tx or *sql.Tx; a pool or connection would commit the messages on their own)", ErrUnsupportedTx, tx)
	}
}

func (w *Writer) enqueuePgx(ctx context.Context, tx pgxTx, msgs []Message) error {
	if len(msgs) == 1 {
		// The common case, one event per business transaction: a plain VALUES insert skips
		// the arrays, unnest and sort of the batch form.
		m := &msgs[0]
		var key *string
		if m.Key != "" {
			key = &m.Key
		}
		if _, err := tx.Exec(ctx, w.pgxInsert1, m.ID.String(), m.Topic, key, m.EventType(), nonNil(m.Payload), envelope.HeadersJSON(m.Headers)); err != nil {
			return fmt.Errorf("outbox: inserting 1 message: %w", err)
		}
		return nil
	}
	ids := make([]string, len(msgs))
	topics := make([]string, len(msgs))
	keys := make([]*string, len(msgs))
	types := make([]string, len(msgs))
	payloads := make([][]byte, len(msgs))
	headers := make([]string, len(msgs))
	for i := range msgs {
		m := &msgs[i]
		ids[i] = m.ID.String()
		topics[i] = m.Topic
		if m.Key != "" {
			keys[i] = &m.Key
		}
		types[i] = m.EventType()
		payloads[i] = nonNil(m.Payload)
		headers[i] = envelope.HeadersJSON(m.Headers)
	}
	if _, err := tx.Exec(ctx, w.pgxInsert, ids, topics, keys, types, payloads, headers); err != nil {
		return fmt.Errorf("outbox: inserting %d messages: %w", len(msgs), err)
	}
	return nil
}

// sqlChunk keeps a multi-row INSERT under every driver's bind-parameter limit.
const sqlChunk = 1000

func (w *Writer) enqueueSQL(ctx context.Context, tx sqlTx, msgs []Message) error {
	for start := 0; start < len(msgs); start += sqlChunk {
		chunk := msgs[start:min(start+sqlChunk, len(msgs))]
		query, args := w.sqlInsert(chunk, time.Now())
		if _, err := tx.ExecContext(ctx, query, args...); err != nil {
			return fmt.Errorf("outbox: inserting %d messages: %w", len(chunk), err)
		}
	}
	return nil
}

func (w *Writer) sqlInsert(msgs []Message, now time.Time) (string, []any) {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	perRow := 6
	switch w.dialect {
	case MySQL:
		// Backticks: MySQL reads double quotes as strings, and key is a reserved word.
		// created_at and available_at default to the server's UTC clock.
		b.WriteString(w.table.QuotedMySQL())
		b.WriteString(" (message_id, topic, `key`, type, payload, headers) VALUES ")
	case SQLite:
		// SQLite has no clock of microsecond precision in SQL: the writer supplies it.
		b.WriteString(w.table.Quoted())
		b.WriteString(" (message_id, topic, key, type, payload, headers, created_at, available_at) VALUES ")
		perRow = 8
	default:
		b.WriteString(w.table.Quoted())
		b.WriteString(" (message_id, topic, key, type, payload, headers) VALUES ")
	}
	args := make([]any, 0, len(msgs)*perRow)
	n := 0
	for i := range msgs {
		m := &msgs[i]
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('(')
		for j := 0; j < perRow; j++ {
			if j > 0 {
				b.WriteByte(',')
			}
			n++
			if w.dialect == Postgres {
				b.WriteByte('$')
				b.WriteString(strconv.Itoa(n))
				switch j {
				case 0:
					b.WriteString("::uuid")
				case 5:
					b.WriteString("::jsonb")
				}
			} else {
				b.WriteByte('?')
			}
		}
		b.WriteByte(')')
		var key any
		if m.Key != "" {
			key = m.Key
		}
		args = append(args, m.ID.String(), m.Topic, key, m.EventType(), nonNil(m.Payload), envelope.HeadersJSON(m.Headers))
		if w.dialect == SQLite {
			us := now.UnixMicro()
			args = append(args, us, us)
		}
	}
	return b.String(), args
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
