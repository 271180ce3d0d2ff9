package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

func TestValidation(t *testing.T) {
	t.Parallel()
	w, err := outbox.NewWriter(outbox.WriterConfig{MaxPayloadBytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		msg   outbox.Message
		field string
	}{
		{"empty topic", outbox.Message{}, "topic"},
		{"control char in topic", outbox.Message{Topic: "a\nb"}, "topic"},
		{"long topic", outbox.Message{Topic: strings.Repeat("t", 256)}, "topic"},
		{"oversize payload", outbox.Message{Topic: "t", Payload: make([]byte, 11)}, "payload"},
		{"empty header name", outbox.Message{Topic: "t", Headers: map[string]string{"": "v"}}, "headers"},
		{"space in header name", outbox.Message{Topic: "t", Headers: map[string]string{"x y": "v"}}, "headers"},
		{"reserved header", outbox.Message{Topic: "t", Headers: map[string]string{"ce-id": "v"}}, "headers"},
		{"newline in header value", outbox.Message{Topic: "t", Headers: map[string]string{"x": "a\r\nb"}}, "headers"},
		{"long key", outbox.Message{Topic: "t", Key: strings.Repeat("k", 1025)}, "key"},
		{"invalid UTF-8 key", outbox.Message{Topic: "t", Key: "k\xff"}, "key"},
		{"invalid UTF-8 header value", outbox.Message{Topic: "t", Headers: map[string]string{"x": "\xc3"}}, "headers"},
	}
	// Every header a broker or the envelope interprets, in another letter case than its
	// canonical one: Enqueue refuses them all.
	for _, name := range []string{
		"Nats-Rollup", "nats-msg-id", "NATS-EXPECTED-LAST-SEQUENCE", "Nats-TTL",
		"CE-ID", "Ce-Source", "ce_id", "CE_TYPE", "cloudEvents:id", "CLOUDEVENTS_SUBJECT",
		"ID", "Source", "SpecVersion", "Type", "Subject", "Time", "DataContentType", "data",
		"cc", "BCC", "X-Death", "x-delay", "x-first-death-queue",
		"HOST", "Content-Length", "transfer-encoding", "Connection", "TE", "Upgrade",
		"Webhook-Signature", "webhook-id", "WEBHOOK-TIMESTAMP",
	} {
		tests = append(tests, struct {
			name  string
			msg   outbox.Message
			field string
		}{"reserved " + name, outbox.Message{Topic: "t", Headers: map[string]string{name: "v"}}, "headers"})
	}
	tests = append(tests, struct {
		name  string
		msg   outbox.Message
		field string
	}{"header names differing in case", outbox.Message{Topic: "t", Headers: map[string]string{"content-type": "a/b", "Content-Type": "c/d"}}, "headers"},
		struct {
			name  string
			msg   outbox.Message
			field string
		}{"structured-mode content type", outbox.Message{Topic: "t", Headers: map[string]string{"Content-Type": "application/cloudevents+json"}}, "headers"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// The transaction is never reached: validation fails first.
			err := w.Enqueue(context.Background(), nil, outbox.Message{Topic: "ok"}, tt.msg)
			var ve *outbox.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, outbox.ErrInvalidMessage) {
				t.Fatalf("err = %v, want a ValidationError", err)
			}
			if ve.Field != tt.field || ve.Index != 1 {
				t.Fatalf("ValidationError = %+v, want field %s at index 1", ve, tt.field)
			}
		})
	}
}

// TestValidationAcceptsUserHeaders: the policy refuses only what it names; ordinary headers,
// content-type, and values with %, spaces and non-ASCII pass.
func TestValidationAcceptsUserHeaders(t *testing.T) {
	t.Parallel()
	w, err := outbox.NewWriter(outbox.WriterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m := outbox.Message{Topic: "t", Headers: map[string]string{
		"content-type": "application/json", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"X-Request-Id": "rabatt 50% €", "identity": "x", "natsy": "y", "cee": "z", "ccc": "w", "hostname": "h",
	}}
	// A nil transaction fails after validation: the error must not be a ValidationError.
	err = w.Enqueue(context.Background(), nil, m)
	var ve *outbox.ValidationError
	if errors.As(err, &ve) {
		t.Fatalf("Enqueue refused valid headers: %v", err)
	}
	if !errors.Is(err, outbox.ErrUnsupportedTx) {
		t.Fatalf("err = %v, want ErrUnsupportedTx", err)
	}
}

func TestWriterConfigErrors(t *testing.T) {
	t.Parallel()
	for _, cfg := range []outbox.WriterConfig{
		{Table: "bad name"},
		{Table: `x"; DROP TABLE users; --`},
		{Dialect: "oracle"},
		{Dialect: outbox.SQLite, Table: "s.outbox"},
		{MaxPayloadBytes: -1},
	} {
		_, err := outbox.NewWriter(cfg)
		var ce *outbox.ConfigError
		if !errors.As(err, &ce) || ce.Field == "" {
			t.Errorf("NewWriter(%+v) = %v, want a ConfigError naming the field", cfg, err)
		}
	}
}

func TestUnsupportedTx(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	db := stdlib.OpenDBFromPool(s.Pool())
	defer db.Close()
	// A pool, a connection or a *sql.DB would commit the insert on its own.
	for _, tx := range []any{"not a tx", s.Pool(), db} {
		err := outbox.Enqueue(context.Background(), tx, outbox.Message{Topic: "t"})
		if !errors.Is(err, outbox.ErrUnsupportedTx) {
			t.Errorf("Enqueue(%T) = %v, want ErrUnsupportedTx", tx, err)
		}
	}
}

func setup(t *testing.T) (*postgres.Store, string) {
	t.Helper()
	pool, schema := pgtest.Schema(t)
	s, err := postgres.New(context.Background(), postgres.Config{Pool: pool, Table: schema + ".outbox"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.MigrateUp(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s, schema + ".outbox"
}

func TestEnqueuePgxAndDatabaseSQL(t *testing.T) {
	t.Parallel()
	s, table := setup(t)
	ctx := context.Background()
	w, err := outbox.NewWriter(outbox.WriterConfig{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	fixed := uuid.MustParse("0190f2a4-0000-7000-8000-000000000001")
	batch := []outbox.Message{
		{Topic: "a", Key: "k", Payload: []byte("1"), Headers: map[string]string{"h": "v"}},
		{Topic: "a", Key: "k", Payload: []byte("2"), ID: fixed},
		{Topic: "b", Payload: nil},
	}
	if err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error { return w.Enqueue(ctx, tx, batch...) }); err != nil {
		t.Fatal(err)
	}
	if batch[0].ID == uuid.Nil || batch[0].ID.Version() != 7 || batch[1].ID != fixed {
		t.Fatalf("ids = %v %v: want a UUIDv7 assigned and the given id kept", batch[0].ID, batch[1].ID)
	}
	db := stdlib.OpenDBFromPool(s.Pool())
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Enqueue(ctx, tx, outbox.Message{Topic: "c", Key: "k", Payload: []byte("3")}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Pool().Query(ctx, `SELECT topic, coalesce(key, ''), payload, headers->>'h', message_id FROM `+table+` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		topic, key, payload string
		h                   *string
		id                  uuid.UUID
	}
	var got []row
	for rows.Next() {
		var r row
		var p []byte
		if err := rows.Scan(&r.topic, &r.key, &p, &r.h, &r.id); err != nil {
			t.Fatal(err)
		}
		r.payload = string(p)
		got = append(got, r)
	}
	if len(got) != 4 || got[0].payload != "1" || got[1].payload != "2" || got[2].topic != "b" || got[3].payload != "3" {
		t.Fatalf("rows = %+v, want the four messages in order", got)
	}
	if got[0].h == nil || *got[0].h != "v" || got[2].key != "" || got[1].id != fixed {
		t.Fatalf("rows = %+v: headers, null key or id not stored", got)
	}
}

func TestEnqueueRollbackLeavesNothing(t *testing.T) {
	t.Parallel()
	s, table := setup(t)
	ctx := context.Background()
	w, _ := outbox.NewWriter(outbox.WriterConfig{Table: table})
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Enqueue(ctx, tx, outbox.Message{Topic: "t"}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.Pool().QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows after rollback = %d, %v", n, err)
	}
}

func TestEnqueueManyInOneStatement(t *testing.T) {
	t.Parallel()
	s, table := setup(t)
	ctx := context.Background()
	w, _ := outbox.NewWriter(outbox.WriterConfig{Table: table})
	msgs := make([]outbox.Message, 2500)
	for i := range msgs {
		msgs[i] = outbox.Message{Topic: "bulk", Key: "k", Payload: []byte(strconv.Itoa(i))}
	}
	db := stdlib.OpenDBFromPool(s.Pool())
	defer db.Close()
	// Both paths: pgx (one unnest statement) and database/sql (chunked multi-row VALUES).
	if err := pgx.BeginFunc(ctx, s.Pool(), func(tx pgx.Tx) error { return w.Enqueue(ctx, tx, msgs...) }); err != nil {
		t.Fatal(err)
	}
	for i := range msgs {
		msgs[i].ID = uuid.Nil
	}
	err := func() error {
		tx, err := db.BeginTx(ctx, &sql.TxOptions{})
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
		if err := w.Enqueue(ctx, tx, msgs...); err != nil {
			return err
		}
		return tx.Commit()
	}()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.Pool().Query(ctx, `SELECT payload FROM `+table+` ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2*len(msgs) {
		t.Fatalf("rows = %d, want %d", len(got), 2*len(msgs))
	}
	for i, p := range got {
		if want := strconv.Itoa(i % len(msgs)); string(p) != want {
			t.Fatalf("row %d payload %q, want %q: enqueue order not kept", i, p, want)
		}
	}
}
