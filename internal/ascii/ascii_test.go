package ascii

import "testing"

func TestEqualFold(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"content-type", "Content-Type", true},
		{"CONTENT-TYPE", "content-type", true},
		{"content-type", "content-typ", false},
		{"content-type", "content_type", false},
		{"k", "\u212a", false}, // Kelvin sign: folded by strings.EqualFold, not here
		{"", "", true},
		{"[", "{", false}, // 0x5b and 0x7b differ by the case bit but are not letters
	} {
		if got := EqualFold(c.a, c.b); got != c.want {
			t.Errorf("EqualFold(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
	}
}
