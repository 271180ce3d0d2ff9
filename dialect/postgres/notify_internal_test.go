package postgres

import (
	"slices"
	"testing"
)

func TestParsePayload(t *testing.T) {
	for _, tc := range []struct {
		in     string
		table  string
		hashes []uint64
	}{
		{"app.outbox", "app.outbox", nil},                  // migration 2, or more than 64 keys
		{"app.outbox 1,42", "app.outbox", []uint64{1, 42}}, // migration 4
		{"app.outbox ", "app.outbox", nil},
		{"app.outbox 1,x", "app.outbox", nil}, // unreadable list: wake every worker
		{"app.outbox 1,-2", "app.outbox", nil},
	} {
		table, hashes, ok := parsePayload(tc.in)
		if !ok || table != tc.table || !slices.Equal(hashes, tc.hashes) || (hashes == nil) != (tc.hashes == nil) {
			t.Errorf("parsePayload(%q) = %q, %v, %v; want %q, %v", tc.in, table, hashes, ok, tc.table, tc.hashes)
		}
	}
}
