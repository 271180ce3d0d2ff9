package outbox_test

import (
	"bytes"
	"context"
	"errors"
	"log"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

func TestLogicalRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 4, 5, 6, 7, 891234000, time.UTC)
	tests := []struct {
		name string
		msg  outbox.Message
		at   time.Time
	}{
		{"minimal", outbox.Message{ID: outbox.NewID(), Topic: "t"}, time.Time{}},
		{"full", outbox.Message{ID: outbox.NewID(), Topic: "orders.created", Key: "o-1", Type: "OrderCreated",
			Payload: []byte{0, 1, 2, 0xff}, Headers: map[string]string{"b": "2", "a": "1", "traceparent": "00-x"}}, at},
		{"unicode", outbox.Message{ID: outbox.NewID(), Topic: "ü.topic", Key: "键", Payload: []byte("ö")}, at},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			enc := outbox.AppendLogical(nil, &tt.msg, tt.at)
			if enc[0] != outbox.LogicalVersion {
				t.Fatalf("version byte %d", enc[0])
			}
			got, err := outbox.ParseLogical(enc)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.msg
			if want.Payload == nil {
				want.Payload = []byte{}
			}
			if !reflect.DeepEqual(got.Message, want) || !got.CreatedAt.Equal(tt.at) {
				t.Fatalf("got %+v at %v, want %+v at %v", got.Message, got.CreatedAt, want, tt.at)
			}
			// Canonical: header order does not change the bytes.
			if again := outbox.AppendLogical(nil, &got.Message, got.CreatedAt); !bytes.Equal(again, enc) {
				t.Fatalf("re-encoding differs")
			}
		})
	}
}

func TestParseLogicalRejects(t *testing.T) {
	t.Parallel()
	good := outbox.AppendLogical(nil, &outbox.Message{ID: outbox.NewID(), Topic: "t", Headers: map[string]string{"a": "1"}, Payload: []byte("p")}, time.Now())
	dupHeaders := outbox.AppendLogical(nil, &outbox.Message{ID: outbox.NewID(), Topic: "t", Headers: map[string]string{"a": "1", "b": "2"}}, time.Time{})
	dupHeaders = bytes.Replace(dupHeaders, []byte("\x00\x00\x00\x01b"), []byte("\x00\x00\x00\x01a"), 1)
	cases := map[string][]byte{
		"empty":          nil,
		"version 2":      append([]byte{2}, good[1:]...),
		"short header":   good[:10],
		"truncated":      good[:len(good)-1],
		"trailing bytes": append(append([]byte(nil), good...), 0),
		"empty topic":    outbox.AppendLogical(nil, &outbox.Message{}, time.Time{}),
		"bad utf-8":      outbox.AppendLogical(nil, &outbox.Message{Topic: "\xff"}, time.Time{}),
		"dup header":     dupHeaders,
		"huge count":     append(append([]byte(nil), good[:25+4+1+4+4]...), 0xff, 0xff, 0xff, 0xff),
	}
	for name, data := range cases {
		if _, err := outbox.ParseLogical(data); !errors.Is(err, outbox.ErrMalformedLogical) {
			t.Errorf("%s: err = %v, want ErrMalformedLogical", name, err)
		}
	}
}

func FuzzParseLogical(f *testing.F) {
	f.Add(outbox.AppendLogical(nil, &outbox.Message{ID: outbox.NewID(), Topic: "t", Key: "k", Type: "ty",
		Payload: []byte("payload"), Headers: map[string]string{"a": "1", "b": "2"}}, time.Now()))
	f.Add(outbox.AppendLogical(nil, &outbox.Message{Topic: "x"}, time.Time{}))
	f.Add([]byte{1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := outbox.ParseLogical(data)
		if err != nil {
			if !errors.Is(err, outbox.ErrMalformedLogical) {
				t.Fatalf("error %v does not wrap ErrMalformedLogical", err)
			}
			return
		}
		// Whatever decodes re-encodes to something that decodes to the same message.
		again, err := outbox.ParseLogical(outbox.AppendLogical(nil, &r.Message, r.CreatedAt))
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("round trip changed the message: %+v vs %+v", again, r)
		}
		if r.Topic == "" {
			t.Fatal("decoded a message without topic")
		}
	})
}

func TestLogicalWriterValidation(t *testing.T) {
	t.Parallel()
	w, err := outbox.NewLogicalWriter(outbox.LogicalWriterConfig{MaxPayloadBytes: 4})
	if err != nil {
		t.Fatal(err)
	}
	err = w.Enqueue(context.Background(), nil, outbox.Message{Topic: "ok"}, outbox.Message{Topic: "t", Payload: []byte("12345")})
	var ve *outbox.ValidationError
	if !errors.As(err, &ve) || ve.Field != "payload" || ve.Index != 1 {
		t.Fatalf("err = %v, want a ValidationError for payload at index 1", err)
	}
	if err := w.Enqueue(context.Background(), "not a tx", outbox.Message{Topic: "t"}); !errors.Is(err, outbox.ErrUnsupportedTx) {
		t.Fatalf("err = %v, want ErrUnsupportedTx", err)
	}
	for _, cfg := range []outbox.LogicalWriterConfig{{Prefix: "a\x00b"}, {MaxPayloadBytes: -1}} {
		var ce *outbox.ConfigError
		if _, err := outbox.NewLogicalWriter(cfg); !errors.As(err, &ce) {
			t.Errorf("NewLogicalWriter(%+v) = %v, want a ConfigError", cfg, err)
		}
	}
}

// TestLogicalSQLExample checks that the SQL recipe in AppendLogical's documentation builds a
// valid message.
func TestLogicalSQLExample(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.Schema(t)
	var content []byte
	err := pool.QueryRow(context.Background(), `SELECT '\x01'::bytea || uuid_send(gen_random_uuid())
	    || int8send((extract(epoch FROM now()) * 1000000)::int8)
	    || int4send(octet_length(convert_to('orders.created', 'UTF8'))) || convert_to('orders.created', 'UTF8')
	    || int4send(5) || convert_to('o-123', 'UTF8')
	    || int4send(0)
	    || int4send(0)
	    || int4send(octet_length($1::bytea)) || $1::bytea`, []byte("{}")).Scan(&content)
	if err != nil {
		t.Fatal(err)
	}
	r, err := outbox.ParseLogical(content)
	if err != nil {
		t.Fatal(err)
	}
	if r.Topic != "orders.created" || r.Key != "o-123" || string(r.Payload) != "{}" || time.Since(r.CreatedAt) > time.Minute {
		t.Fatalf("decoded %+v", r)
	}
}

// TestEnqueueLogical writes through both transaction kinds and reads the messages back from a
// temporary replication slot: in order, with the database's clock, and nothing from a
// rolled-back transaction.
func TestEnqueueLogical(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.Schema(t)
	ctx := context.Background()
	prefix := "outbox-test-" + schema
	w, err := outbox.NewLogicalWriter(outbox.LogicalWriterConfig{Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	conn, slot := tempSlot(t, pool, schema)

	first := make([]outbox.Message, 1500)
	for i := range first {
		first[i] = outbox.Message{Topic: "bulk", Key: "k", Payload: []byte(strconv.Itoa(i))}
	}
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return w.Enqueue(ctx, tx, first...) }); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Enqueue(ctx, tx, outbox.Message{Topic: "rolled.back"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	stx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	second := make([]outbox.Message, 1200) // more than one chunk of the VALUES form
	for i := range second {
		second[i] = outbox.Message{Topic: "sql", Key: "k", Payload: []byte(strconv.Itoa(len(first) + i))}
	}
	if err := w.Enqueue(ctx, stx, second...); err != nil {
		t.Fatal(err)
	}
	if err := stx.Commit(); err != nil {
		t.Fatal(err)
	}

	got := readSlotMessages(t, conn, slot, prefix)
	want := append(first, second...) //nolint:makezero // first was filled by index; want is first, then second
	if len(got) != len(want) {
		t.Fatalf("read %d messages, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.ID != want[i].ID || string(r.Payload) != strconv.Itoa(i) || r.Topic != want[i].Topic {
			t.Fatalf("message %d = %+v, want %+v", i, r.Message, want[i])
		}
		if r.CreatedAt.IsZero() || time.Since(r.CreatedAt) > time.Minute {
			t.Fatalf("message %d created_at = %v, want the database's now()", i, r.CreatedAt)
		}
	}
}

// tempSlot creates a publication and a temporary pgoutput slot on a dedicated connection; both
// go away when the test ends.
func tempSlot(t *testing.T, pool *pgxpool.Pool, name string) (*pgxpool.Conn, string) {
	t.Helper()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE PUBLICATION "`+name+`"`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), `DROP PUBLICATION IF EXISTS "`+name+`"`); err != nil {
			t.Errorf("dropping publication: %v", err)
		}
	})
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A temporary slot lives as long as its session: close it, don't return it.
		_ = conn.Hijack().Close(context.Background())
	})
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := conn.Exec(cctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput', true)`, name); err != nil {
		t.Fatal(err)
	}
	return conn, name
}

// readSlotMessages consumes the slot and decodes the logical messages with prefix.
func readSlotMessages(t *testing.T, conn *pgxpool.Conn, slot, prefix string) []outbox.Record {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL,
		'proto_version', '1', 'publication_names', $2, 'messages', 'true')`, slot, slot)
	if err != nil {
		t.Fatal(err)
	}
	datas, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	var out []outbox.Record
	for _, d := range datas {
		m, err := pglogrepl.Parse(d)
		if err != nil {
			continue // message types this test does not care about
		}
		lm, ok := m.(*pglogrepl.LogicalDecodingMessage)
		if !ok || lm.Prefix != prefix {
			continue
		}
		if !lm.Transactional {
			t.Fatalf("message not transactional")
		}
		r, err := outbox.ParseLogical(lm.Content)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// Write an event into the WAL only, in the same transaction as the business data. A relay
// with the WAL source in logical mode (package relay/wal) publishes it after the commit.
func ExampleEnqueueLogical() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@db/shop")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE orders SET status = 'paid' WHERE id = $1`, 42); err != nil {
			return err
		}
		return outbox.EnqueueLogical(ctx, tx, outbox.Message{
			Topic:   "orders.paid",
			Key:     "order-42",
			Payload: []byte(`{"order_id":42}`),
		})
	})
	if err != nil {
		log.Fatal(err)
	}
}
