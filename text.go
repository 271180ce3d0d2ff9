package outbox

import (
	"strings"
	"unicode/utf8"
)

// StorableText returns s as every dialect can keep it in a text column, for error texts
// (Retry.Error, Dead.Error) and other text a store writes that did not pass Enqueue's
// validation: valid UTF-8 (each invalid byte sequence becomes U+FFFD), without NUL bytes
// (PostgreSQL refuses both in text columns, which would fail a whole batch's Finish), and at
// most about limit bytes, cut as CutText cuts.
func StorableText(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	return CutText(s, limit)
}

// CutText returns s if it is at most limit bytes long, else its longest prefix of at most
// limit bytes that ends on a character boundary, followed by "…" to mark the cut (3 bytes
// more).
func CutText(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := max(limit, 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
