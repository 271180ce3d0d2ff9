package migrate

import (
	"testing"
	"testing/fstest"

	"github.com/outboxgo/outbox/internal/sqlident"
)

func TestLoadBacktick(t *testing.T) {
	tb, err := sqlident.Parse("app.events")
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{
		"m/001_init.up.sql":   {Data: []byte("CREATE TABLE {{.Table}} (x INT, KEY {{.Name \"_x_idx\"}} (x)); CREATE TABLE {{.Dead}} (); CREATE TABLE {{.Relays}} ();")},
		"m/001_init.down.sql": {Data: []byte("DROP TABLE {{.Versions}}, {{.Sibling \"_other\"}};")},
	}
	ms, err := LoadBacktick(fsys, "m", BacktickNamesFor(tb))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Version != 1 || ms[0].Name != "init" {
		t.Fatalf("migrations = %+v", ms)
	}
	wantUp := "CREATE TABLE `app`.`events` (x INT, KEY `events_x_idx` (x)); CREATE TABLE `app`.`events_dead` (); CREATE TABLE `app`.`events_relays` ();"
	if ms[0].Up != wantUp {
		t.Errorf("up = %s\nwant %s", ms[0].Up, wantUp)
	}
	if want := "DROP TABLE `app`.`events_migrations`, `app`.`events_other`;"; ms[0].Down != want {
		t.Errorf("down = %s\nwant %s", ms[0].Down, want)
	}
	// An unknown name fails loudly instead of rendering as nothing.
	fsys["m/002_x.up.sql"] = &fstest.MapFile{Data: []byte("{{.Nope}}")}
	fsys["m/002_x.down.sql"] = &fstest.MapFile{Data: []byte("x")}
	if _, err := LoadBacktick(fsys, "m", BacktickNamesFor(tb)); err == nil {
		t.Error("unknown template field: want error")
	}
}
