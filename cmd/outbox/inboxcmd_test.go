package main

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
)

func TestInboxDead(t *testing.T) {
	t.Parallel()
	pool, schema := pgtest.Schema(t)
	ctx := context.Background()
	env := invocation{env: map[string]string{"OUTBOX_DATABASE_URL": pgtest.URL(), "OUTBOX_TABLE": schema + ".outbox"}}
	table := schema + ".billing_inbox"
	r := env.run(t, "inbox", "dead", "list", "--consumer", "billing", "--table", table).want(t, 1)
	r.contains(t, "outbox migrate up --inbox "+table)
	env.run(t, "migrate", "up", "--inbox", table).want(t, 0)
	env.run(t, "inbox", "dead", "list", "--table", table).want(t, 2).contains(t, "--consumer")
	env.run(t, "inbox", "dead", "list", "--consumer", "billing", "--table", table).want(t, 0).contains(t, "no dead letters")

	in, err := inbox.New(ctx, inbox.Config{Pool: pool, Table: table, Consumer: "billing", MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	fail := func(context.Context, outbox.Tx, inbox.Message) error { return errors.New("card declined \x1b[31m") }
	for i, key := range []string{"acct-1", "acct-2\x1b[2J"} {
		m := inbox.Message{ID: "m" + string(rune('1'+i)), Topic: "payments", Type: "payment.requested", Source: "shop",
			Key: key, Time: time.Now(), Position: int64(i + 1), Payload: []byte(`{}`)}
		if o, err := in.Deliver(ctx, inbox.Delivery{Message: m}, fail); err != nil || !o.Retry {
			t.Fatalf("deliver = %+v, %v", o, err)
		}
		if o, err := in.Deliver(ctx, inbox.Delivery{Message: m, Redelivered: true}, fail); err != nil || o.Result != inbox.DeadLettered {
			t.Fatalf("redeliver = %+v, %v", o, err)
		}
	}
	r = env.run(t, "inbox", "dead", "list", "--consumer", "billing", "--table", table).want(t, 0)
	r.contains(t, "m1", "payments", "acct-1", "card declined")
	if regexp.MustCompile("\x1b").MatchString(r.stdout) {
		t.Fatalf("row data reached the terminal unescaped:\n%q", r.stdout)
	}
	// Another consumer's letters are its own.
	env.run(t, "inbox", "dead", "list", "--consumer", "shipping", "--table", table).want(t, 0).contains(t, "no dead letters")

	r = env.run(t, "inbox", "dead", "list", "--consumer", "billing", "--table", table, "--json").want(t, 0)
	var listed []inboxDeadJSON
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed) != 2 {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	if l := listed[0]; l.MessageID != "m1" || l.Position != 1 || l.Attempts != 1 || l.Time == nil || string(l.Payload) != "{}" {
		t.Fatalf("listed = %+v", l)
	}

	// retry marks one; the consumer's redrive applies it.
	env.run(t, "inbox", "dead", "retry", "--consumer", "billing", "--table", table, "999").want(t, 1).contains(t, "not dead letters")
	env.run(t, "inbox", "dead", "retry", "--consumer", "billing", "--table", table, strconv.FormatInt(listed[0].ID, 10)).want(t, 0).contains(t, "marked 1 dead letter")
	env.run(t, "inbox", "dead", "list", "--consumer", "billing", "--table", table, "--json").want(t, 0).contains(t, `"m2"`)
	applied := 0
	n, err := in.Redrive(ctx, func(_ context.Context, _ outbox.Tx, m inbox.Message) error {
		if m.ID != "m1" {
			t.Errorf("redrove %s", m.ID)
		}
		applied++
		return nil
	})
	if err != nil || n != 1 || applied != 1 {
		t.Fatalf("redrive = %d, %v (handler ran %d times)", n, err, applied)
	}
	env.run(t, "inbox", "dead", "purge", "--consumer", "billing", "--table", table, "--all").want(t, 0).contains(t, "deleted 1 dead letter")
	env.run(t, "inbox", "dead", "list", "--consumer", "billing", "--table", table).want(t, 0).contains(t, "no dead letters")
	env.run(t, "inbox", "dead", "purge", "--consumer", "billing", "--table", table).want(t, 2)
	env.run(t, "inbox", "dead", "list", "--consumer", "billing", "--table", "bad name;").want(t, 2).contains(t, "--table")
}
