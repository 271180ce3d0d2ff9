package listen_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outboxgo/outbox"
	"github.com/outboxgo/outbox/dialect/postgres"
	"github.com/outboxgo/outbox/inbox"
	"github.com/outboxgo/outbox/internal/testutil/pgtest"
	"github.com/outboxgo/outbox/listen"
)

// Example writes a profile's new name as an event only, reads it back at once from the
// cache, then applies the event as the service's own inbox adapter would, and reads it on
// another replica with the write's token.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.URL())
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	schema := "listen_example_" + strings.ReplaceAll(outbox.NewID().String(), "-", "") // private: the server is shared
	_, err = pool.Exec(ctx, `CREATE SCHEMA `+schema)
	must(err)
	defer func() { _, _ = pool.Exec(ctx, `DROP SCHEMA `+schema+` CASCADE`) }()
	st, err := postgres.New(ctx, postgres.Config{Pool: pool, Table: schema + ".outbox"})
	must(err)
	_, err = st.MigrateUp(ctx)
	must(err)
	in, err := inbox.New(ctx, inbox.Config{Pool: pool, Table: schema + ".inbox", Consumer: "profiles"})
	must(err)
	_, err = in.MigrateUp(ctx)
	must(err)
	_, err = pool.Exec(ctx, `CREATE TABLE `+schema+`.profiles (key text PRIMARY KEY, version bigint NOT NULL, value bytea NOT NULL)`)
	must(err)
	w, err := outbox.NewWriter(outbox.WriterConfig{Table: schema + ".outbox"})
	must(err)

	load := func(ctx context.Context, key string) (listen.State, bool, error) {
		s := listen.State{Key: key}
		err := pool.QueryRow(ctx, `SELECT version, value FROM `+schema+`.profiles WHERE key = $1`, key).Scan(&s.Version, &s.Value)
		if errors.Is(err, pgx.ErrNoRows) {
			return listen.State{}, false, nil
		}
		return s, err == nil, err
	}
	replica := func() *listen.Service {
		cache, err := listen.NewMemoryCache(listen.MemoryCacheConfig{TTL: time.Minute})
		must(err)
		s, err := listen.New(listen.Config{Inbox: in, Cache: cache, Writer: w, Load: load})
		must(err)
		return s
	}
	a, b := replica(), replica()

	// POST on replica A: only the event is written.
	tx, err := pool.Begin(ctx)
	must(err)
	p, err := a.Write(ctx, tx, "user-1", func(cur listen.State, found bool) (outbox.Message, listen.State, error) {
		name := []byte("Ada")
		return outbox.Message{Topic: "profiles", Type: "profile.renamed", Payload: name}, listen.State{Value: name}, nil
	})
	must(err)
	must(tx.Commit(ctx))
	must(p.Committed(ctx))
	token := p.Token().String() // to the client, in a response header

	// GET on A, right after: from the cache.
	s, _, err := a.Read(ctx, "user-1")
	must(err)
	fmt.Printf("A reads %s (version %d)\n", s.Value, s.Version)
	_, found, err := b.Read(ctx, "user-1")
	must(err)
	fmt.Println("B finds it before it is applied:", found)

	// The self-consumer: the service's inbox adapter delivers its own event.
	apply := listen.ExecApply(`INSERT INTO ` + schema + `.profiles AS p (key, version, value) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET version = excluded.version, value = excluded.value WHERE p.version < excluded.version`)
	var msg inbox.Message
	must(pool.QueryRow(ctx, `SELECT id, message_id::text, topic, key, type, payload, headers FROM `+schema+`.outbox`).
		Scan(&msg.Position, &msg.ID, &msg.Topic, &msg.Key, &msg.Type, &msg.Payload, &msg.Headers))
	o, err := in.Deliver(ctx, inbox.Delivery{Message: msg}, a.Handler(apply))
	must(err)
	fmt.Println("self-consumer:", o.Result)

	// GET on B with the client's token.
	tok, err := listen.ParseToken(token)
	must(err)
	s, _, err = b.ReadAfter(ctx, "user-1", tok, 5*time.Second)
	must(err)
	fmt.Printf("B reads %s (version %d)\n", s.Value, s.Version)
	// Output:
	// A reads Ada (version 1)
	// B finds it before it is applied: false
	// self-consumer: applied
	// B reads Ada (version 1)
}
