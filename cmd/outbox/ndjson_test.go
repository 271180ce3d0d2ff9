package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outboxgo/outbox/dialect/sqlite"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

// ndjsonFile writes n message lines to a file, line bad (from 1; 0 for none) without its
// topic, and returns its path.
func ndjsonFile(t *testing.T, n, bad int) string {
	t.Helper()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		switch {
		case i == bad:
			fmt.Fprintf(&b, `{"key":"k%d","payload":{"n":%d}}`+"\n", i%7, i)
		case i%3 == 0:
			fmt.Fprintf(&b, `{"topic":"orders","key":"k%d","data":"n=%d","headers":{"content-type":"text/plain"}}`+"\n", i%7, i)
		default:
			fmt.Fprintf(&b, `{"topic":"orders","key":"k%d","payload":{"n":%d}}`+"\n", i%7, i)
		}
	}
	path := filepath.Join(t.TempDir(), "messages.ndjson")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantPayloads checks that the outbox holds the payloads of lines 1 to n of ndjsonFile, in
// their order.
func wantPayloads(t *testing.T, payloads [][]byte, n int) {
	t.Helper()
	if len(payloads) != n {
		t.Fatalf("%d messages in the outbox, want %d", len(payloads), n)
	}
	for i, p := range payloads {
		want := fmt.Sprintf(`{"n":%d}`, i+1)
		if (i+1)%3 == 0 {
			want = fmt.Sprintf("n=%d", i+1)
		}
		if string(p) != want {
			t.Fatalf("message %d has payload %q, want %q", i+1, p, want)
		}
	}
}

// testEnqueueNDJSON enqueues a 10,000-line file, then one with a bad line 2,500 in batches
// of 1,000 (2,000 committed), then resumes it with --skip 2000 once fixed.
func testEnqueueNDJSON(t *testing.T, in invocation, payloads func() [][]byte, reset func()) {
	in.progressEvery = -1
	r := in.run(t, "enqueue", "--ndjson", ndjsonFile(t, 10000, 0), "--batch", "4000").want(t, 0)
	if !strings.HasPrefix(r.stdout, "enqueued 10000 message(s) from ") {
		t.Fatalf("stdout = %q", r.stdout)
	}
	wantProgress(t, r, "enqueue", "4000/10000 (40%)", "8000/10000 (80%)", "10000/10000 (100%)")
	wantPayloads(t, payloads(), 10000)

	reset()
	path := ndjsonFile(t, 10000, 2500)
	r = in.run(t, "enqueue", "--ndjson", path).want(t, 1).contains(t,
		`line 2500: field "topic": required`, "2000 message(s) committed, through line 2000", "resume with --skip 2000")
	wantPayloads(t, payloads(), 2000)
	if err := os.WriteFile(path, []byte(strings.Replace(mustRead(t, path), `{"key":"k1","payload":{"n":2500}}`, `{"topic":"orders","key":"k1","payload":{"n":2500}}`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	r = in.run(t, "enqueue", "--ndjson", path, "--skip", "2000").want(t, 0).contains(t, "enqueued 8000 message(s)")
	wantPayloads(t, payloads(), 10000)
	wantProgress(t, r, "enqueue", "1000/8000 (12%)", "2000/8000 (25%)", "3000/8000 (37%)", "4000/8000 (50%)",
		"5000/8000 (62%)", "6000/8000 (75%)", "7000/8000 (87%)", "8000/8000 (100%)")
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEnqueueNDJSONPostgres(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.Schema(t)
	in := invocation{env: map[string]string{"OUTBOX_DATABASE_URL": pgtest.URL(), "OUTBOX_TABLE": schema + ".outbox"}}
	in.run(t, "migrate", "up").want(t, 0)
	ctx := context.Background()
	testEnqueueNDJSON(t, in, func() [][]byte {
		rows, err := pool.Query(ctx, "SELECT payload FROM "+schema+".outbox ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out [][]byte
		for rows.Next() {
			var p []byte
			if err := rows.Scan(&p); err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}, func() {
		if _, err := pool.Exec(ctx, "DELETE FROM "+schema+".outbox"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestEnqueueNDJSONSQLite(t *testing.T) {
	t.Parallel()
	in := sqliteEnv(t)
	in.run(t, "migrate", "up").want(t, 0)
	ctx := context.Background()
	st, err := sqlite.New(ctx, sqlite.Config{Path: strings.TrimPrefix(in.env["OUTBOX_DATABASE_URL"], "sqlite:")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	testEnqueueNDJSON(t, in, func() [][]byte {
		rows, err := st.DB().QueryContext(ctx, "SELECT payload FROM outbox ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out [][]byte
		for rows.Next() {
			var p []byte
			if err := rows.Scan(&p); err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}, func() {
		if _, err := st.DB().ExecContext(ctx, "DELETE FROM outbox"); err != nil {
			t.Fatal(err)
		}
	})
}

// From standard input (total unknown), with ids and every kind of payload; the errors name
// the line and the field, and commit nothing of the batch.
func TestEnqueueNDJSONStdin(t *testing.T) {
	t.Parallel()
	in := sqliteEnv(t)
	in.progressEvery = -1
	in.run(t, "migrate", "up").want(t, 0)
	in.stdin = `{"topic":"a","id":"0190b6f4-7d1e-7c3a-9f00-000000000001","data":"x"}

{"topic":"b","payload_base64":"AAEC","type":"b.created"}
{"topic":"c","payload":[1, 2]}
`
	r := in.run(t, "enqueue", "--ndjson", "-").want(t, 0)
	if r.stdout != "enqueued 3 message(s) from standard input\n" {
		t.Fatalf("stdout = %q", r.stdout)
	}
	wantProgress(t, r, "enqueue", "3, ")
	if s := statusJSONOf(t, in); s.Pending != 3 {
		t.Fatalf("pending %d, want 3", s.Pending)
	}
	for _, tc := range []struct{ stdin, want string }{
		{`{"topic":"a"}` + "\n" + `{"topc":"a"}`, `line 2: field "topc": unknown field`},
		{`{"topic":"a","key":3}`, `line 1: field "key": want a string, got a JSON number`},
		{`{"topic":"a","data":"x","payload":1}`, `line 1: field "payload": give one of data, payload and payload_base64`},
		{`{"topic":"a","id":"x"}`, `line 1: field "id": not a UUID`},
		{`{"topic":"a","payload_base64":"!"}`, `line 1: field "payload_base64": not base64`},
		{`{"topic":"a"`, `line 1: not a JSON object`},
		{`{"topic":"a"} {"topic":"b"}`, `line 1: more than one JSON value`},
		{`{"topic":"a"}` + "\n" + `{"topic":"a","headers":{"ce-id":"1"}}`, `line 2: field "headers": header "ce-id"`},
	} {
		in.stdin = tc.stdin
		in.run(t, "enqueue", "--ndjson", "-").want(t, 1).contains(t, tc.want, "no message committed")
	}
	if s := statusJSONOf(t, in); s.Pending != 3 {
		t.Fatalf("pending %d after the refused lines, want 3", s.Pending)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"enqueue", "--ndjson", "-", "--topic", "x"}, "--topic is for one message"},
		{[]string{"enqueue", "--ndjson", "-", "--batch", "0"}, "--batch"},
		{[]string{"enqueue", "--ndjson", "-", "--skip", "-1"}, "--skip"},
		{[]string{"enqueue", "--topic", "x", "--data", "y", "--skip", "1"}, "--skip goes with --ndjson"},
	} {
		in.run(t, tc.args...).want(t, 2).contains(t, tc.want)
	}
}
