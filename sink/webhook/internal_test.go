package webhook

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 14, 15, 9, 26, 0, time.UTC)
	tests := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"99999999999999", 365 * 24 * time.Hour, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"Fri, 14 Mar 2025 15:10:56 GMT", 90 * time.Second, true},
		{"Friday, 14-Mar-25 15:10:56 GMT", 90 * time.Second, true}, // RFC 850
		{"Fri Mar 14 15:10:56 2025", 90 * time.Second, true},       // asctime
	}
	for _, tc := range tests {
		got, ok := parseRetryAfter(tc.v, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseRetryAfter(%q) = %s, %v; want %s, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}

func TestExcerpt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body      string
		truncated bool
		redact    []string
		want      string
	}{
		{"", false, nil, ""},
		{"  bad request \n", false, nil, "bad request"},
		{"a\r\n\r\nb\x00c", false, nil, "a b c"},
		{"bad\xffutf8", false, nil, "bad\uFFFDutf8"},
		{"token=abc123456 rejected", false, []string{"abc123456"}, "token=[redacted] rejected"},
		{"cut here", true, nil, "cut here…"},
		{"cut in é"[:len("cut in é")-1], true, nil, "cut in…"},
		{strings.Repeat("x", 300), false, nil, strings.Repeat("x", 256) + "…"},
	}
	for _, tc := range tests {
		if got := excerpt([]byte(tc.body), tc.truncated, tc.redact); got != tc.want {
			t.Errorf("excerpt(%q, %v) = %q, want %q", tc.body, tc.truncated, got, tc.want)
		}
	}
}

func FuzzExcerpt(f *testing.F) {
	f.Add([]byte("error: \x00\xff\r\n"), true)
	f.Add([]byte(strings.Repeat("é", 200)), false)
	f.Fuzz(func(t *testing.T, body []byte, truncated bool) {
		got := excerpt(body, truncated, []string{"secret"})
		if !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8: %q", got)
		}
		if n := len(strings.TrimSuffix(got, "…")); n > maxExcerpt {
			t.Fatalf("%d bytes", n)
		}
		if strings.Contains(got, "secret") {
			t.Fatalf("secret kept: %q", got)
		}
		for _, r := range got {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in %q", got)
			}
		}
	})
}

func FuzzVerify(f *testing.F) {
	f.Add("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_1", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", []byte("{}"))
	f.Add("raw", "", "x", "v1, v1,,", []byte(nil))
	f.Fuzz(func(t *testing.T, secret, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		_ = Verify(secret, h, body, time.Hour) // must not panic
		// A signature made by Sign always verifies.
		if secret == "" || strings.HasPrefix(secret, SecretPrefix) || id == "" {
			return
		}
		now := time.Now()
		good, err := Sign(secret, id, now, body)
		if err != nil {
			t.Fatal(err)
		}
		h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
		h.Set(HeaderSignature, good)
		if err := verifyAt(secret, h, body, time.Hour, now); err != nil {
			t.Fatalf("Sign/Verify round trip: %v", err)
		}
	})
}
