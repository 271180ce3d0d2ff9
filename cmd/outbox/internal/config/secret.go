package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"strings"
)

// Secret is a setting that must never be printed: a password, a signing secret, a header
// value such as an Authorization token. Formatted with any fmt verb, logged with slog or
// marshaled as text, a non-empty Secret shows as [redacted]; use string(s) for the value.
type Secret string

// redacted is what a non-empty Secret prints as.
const redacted = "[redacted]"

func (s Secret) shown() string {
	if s == "" {
		return ""
	}
	return redacted
}

// Format implements fmt.Formatter: every verb prints the redacted form.
func (s Secret) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), s.shown())
}

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.shown()) }

// MarshalText implements encoding.TextMarshaler, so that JSON or YAML dumps redact it too.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.shown()), nil }

// URL is a setting holding a URL, or several separated by commas, that may carry
// credentials (postgres://user:password@..., amqp://user:password@...) or tokens in its path
// or query (webhook endpoints). It prints with the password replaced by xxxxx and without
// path and query; use string(u) for the value.
type URL string

// Format implements fmt.Formatter: every verb prints the redacted form.
func (u URL) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), RedactURL(string(u)))
}

// LogValue implements slog.LogValuer.
func (u URL) LogValue() slog.Value { return slog.StringValue(RedactURL(string(u))) }

// MarshalText implements encoding.TextMarshaler, so that JSON or YAML dumps redact it too.
func (u URL) MarshalText() ([]byte, error) { return []byte(RedactURL(string(u))), nil }

// RedactURL returns s, one URL or several separated by commas, in a form safe to print:
// passwords become xxxxx and paths and queries (which may hold tokens) become "/…".
// Addresses without a scheme (host:port, user:pass@host) and file paths (sqlite:x.db) keep
// their form, minus any user info; a keyword DSN (host=db password=pw) keeps its form with
// the secret keys' values as xxxxx. Redact does the same for URLs in free text.
func RedactURL(s string) string {
	if !strings.Contains(s, ",") {
		return redactOne(s)
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return strings.Join(parts, ",")
}

func redactOne(s string) string {
	trimmed := strings.TrimSpace(s)
	u, err := url.Parse(trimmed)
	if err != nil || u.Host == "" {
		// Not scheme://host: keep it unless it has user info (user:pass@host:port).
		if at := strings.LastIndexByte(trimmed, '@'); at >= 0 {
			return "xxxxx@" + trimmed[at+1:]
		}
		if err != nil {
			return "(invalid URL)"
		}
		return redactKeywords(trimmed) // a keyword DSN: host=db password=pw
	}
	var b strings.Builder
	b.WriteString(u.Scheme)
	b.WriteString("://")
	if u.User != nil {
		// A user name beside a password is a name; alone it may be a token.
		if _, ok := u.User.Password(); ok {
			b.WriteString(u.User.Username() + ":xxxxx@")
		} else {
			b.WriteString("xxxxx@")
		}
	}
	b.WriteString(u.Host)
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		b.WriteString("/…")
	} else if u.Path == "/" {
		b.WriteByte('/')
	}
	return b.String()
}
