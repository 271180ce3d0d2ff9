package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/sqlite"
)

// An operator pauses a topic in the table (what 'outbox pause topic' and POST /api/v1/pauses
// do); every relay reading the pauses (relay.Config.Pauses) holds its messages until it is
// resumed.
func ExampleStore_Pause() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "outbox-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	store, err := sqlite.New(ctx, sqlite.Config{Path: filepath.Join(dir, "shop.db")})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if _, err := store.MigrateUp(ctx); err != nil {
		log.Fatal(err)
	}

	p := dialect.Pause{Kind: dialect.PauseTopic, Name: "orders.created", Reason: "billing consumer deploy", PausedBy: "ops"}
	if err := store.Pause(ctx, p); err != nil {
		log.Fatal(err)
	}
	if err := store.Pause(ctx, p); errors.Is(err, dialect.ErrAlreadyPaused) {
		fmt.Println("paused already")
	}
	pauses, err := store.ListPauses(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range pauses {
		fmt.Printf("%s %s: %s\n", p.Kind, p.Name, p.Reason)
	}
	if err := store.Resume(ctx, dialect.PauseTopic, "orders.created"); err != nil {
		log.Fatal(err)
	}
	// Output:
	// paused already
	// topic orders.created: billing consumer deploy
}
