package sqlident

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		quoted  string
		wantErr bool
	}{
		{in: "outbox", quoted: `"outbox"`},
		{in: "app.outbox", quoted: `"app"."outbox"`},
		{in: "_x1", quoted: `"_x1"`},
		{in: "", wantErr: true},
		{in: "1abc", wantErr: true},
		{in: `out"box`, wantErr: true},
		{in: "a.b.c", wantErr: true},
		{in: "outbox; DROP TABLE users", wantErr: true},
		{in: ".outbox", wantErr: true},
		{in: "app.", wantErr: true},
		{in: "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghij", wantErr: true},
		{in: "ünï", wantErr: true},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse(%q) error = %v, want ErrInvalid", tt.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got.Quoted() != tt.quoted {
			t.Errorf("Parse(%q).Quoted() = %s, want %s", tt.in, got.Quoted(), tt.quoted)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"outbox", "a.b", `x"y`, "a.b.c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tb, err := Parse(s)
		if err != nil {
			return
		}
		// Anything accepted must round-trip and never contain a quote.
		if tb.String() != s {
			t.Fatalf("round trip %q -> %q", s, tb.String())
		}
		for _, r := range tb.Quoted() {
			if r == ';' || r == '\'' || r == ' ' {
				t.Fatalf("unsafe quoted identifier %q", tb.Quoted())
			}
		}
	})
}
