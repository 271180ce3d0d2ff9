package envelope

import "testing"

func TestHeadersJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   map[string]string
		want string
	}{
		{nil, "{}"},
		{map[string]string{}, "{}"},
		{map[string]string{"b": "2", "a": "1"}, `{"a":"1","b":"2"}`},
		{map[string]string{"q": `"<x>"`}, `{"q":"\"\u003cx\u003e\""}`},
		{map[string]string{"bad": "\xff"}, `{"bad":"\ufffd"}`},
	} {
		if got := HeadersJSON(tc.in); got != tc.want {
			t.Errorf("HeadersJSON(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
