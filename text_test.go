package outbox_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/outboxgo/outbox"
)

func TestCutText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in    string
		limit int
		want  string
	}{
		{"", 5, ""},
		{"short", 5, "short"},
		{"longer", 5, "longe…"},
		{"ééé", 3, "é…"}, // é is 2 bytes: the cut moves back to a character boundary
		{"ééé", 4, "éé…"},
		{"€uro", 2, "…"}, // nothing fits before the first boundary
		{"abc", 0, "…"},
		{"abc", -1, "…"},
	} {
		if got := outbox.CutText(tc.in, tc.limit); got != tc.want {
			t.Errorf("CutText(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
	}
}

// Whatever bytes a broker sent back, the text is valid UTF-8 without NUL, and cut.
func TestStorableText(t *testing.T) {
	t.Parallel()
	if got := outbox.StorableText("a\x00b\xffc", 100); got != "ab\uFFFDc" {
		t.Fatalf("StorableText = %q", got)
	}
	long := "broker said \x00\xff\xfe " + strings.Repeat("é", 1500)
	got := outbox.StorableText(long, 2000)
	if !utf8.ValidString(got) || strings.ContainsRune(got, 0) || len(got) > 2000+len("…") || !strings.HasSuffix(got, "…") {
		t.Fatalf("StorableText of %d bytes: %d bytes, valid %v, suffix %q", len(long), len(got), utf8.ValidString(got), got[len(got)-5:])
	}
	if !strings.HasPrefix(got, "broker said \uFFFD") {
		t.Fatalf("StorableText kept %q", got[:20])
	}
}
