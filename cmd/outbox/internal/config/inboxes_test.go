package config

import (
	"slices"
	"testing"
)

func TestAdminInboxes(t *testing.T) {
	t.Parallel()
	const addr = "admin:\n  addr: 127.0.0.1:9090\n  inboxes:\n"
	cfg, err := Load(LoadOptions{File: writeFile(t, addr+"    - {table: shop.billing_inbox, consumer: billing}\n    - {consumer: shipping}\n"),
		Getenv: env("OUTBOX_DATABASE_URL", pgURL)})
	if err != nil {
		t.Fatal(err)
	}
	want := []AdminInbox{{Table: "shop.billing_inbox", Consumer: "billing"}, {Table: "inbox", Consumer: "shipping"}}
	if !slices.Equal(cfg.Admin.Inboxes, want) {
		t.Fatalf("admin.inboxes = %+v, want %+v", cfg.Admin.Inboxes, want)
	}
	for _, tt := range []struct {
		name, yaml, url, field, reason string
	}{
		{"no consumer", addr + "    - {table: inbox}\n", pgURL, "admin.inboxes[0].consumer", "required"},
		{"bad table", addr + "    - {consumer: a}\n    - {table: 'a;b', consumer: b}\n", pgURL, "admin.inboxes[1].table", ""},
		{"qualified in sqlite", addr + "    - {table: s.inbox, consumer: a}\n", "sqlite:x.db", "admin.inboxes[0].table", "cannot be schema-qualified"},
		{"control character", addr + "    - {consumer: \"a\\u0007\"}\n", pgURL, "admin.inboxes[0].consumer", "printable"},
		{"twice", addr + "    - {consumer: a}\n    - {table: inbox, consumer: a}\n", pgURL, "admin.inboxes[1].consumer", "twice"},
		{"unknown key", addr + "    - {consumer: a, tabel: x}\n", pgURL, "admin.inboxes[0].tabel", "known keys here: table, consumer"},
		{"not a list", addr + "    {consumer: a}\n", pgURL, "admin.inboxes", "list"},
		{"item not a mapping", addr + "    - billing\n", pgURL, "admin.inboxes[0]", "mapping"},
		{"without addr", "admin:\n  inboxes:\n    - {consumer: a}\n", pgURL, "admin.addr", "required when another admin setting is set"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(LoadOptions{File: writeFile(t, tt.yaml), Getenv: env("OUTBOX_DATABASE_URL", tt.url)})
			wantConfigError(t, err, tt.field, tt.field+": ", tt.reason)
		})
	}
}
