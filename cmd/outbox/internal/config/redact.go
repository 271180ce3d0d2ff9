package config

import (
	"regexp"
	"strings"
)

// The forms in which a secret travels in free text.
var (
	// textURL is a URL in free text: scheme://, then up to a space, quote or bracket.
	textURL = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.\-]*://[^\s"'<>` + "`" + `]+`)
	// textUserinfo is user:password@ without a scheme (a Kafka broker "u:pw@host:9092", a Go
	// MySQL DSN "u:pw@tcp(host)/db"); the user name may be empty.
	textUserinfo = regexp.MustCompile(`([^\s"'@/:=,;()\[\]<>` + "`" + `]*):([^\s"'@/` + "`" + `]+)@`)
	// textKeyword is a key=value pair whose key names a secret: keyword DSNs
	// ("host=db password=pw"), query strings ("?sslpassword=pw&..."), logfmt.
	textKeyword = regexp.MustCompile(`(?i)([a-z0-9_.\-]*(?:password|passwd|pwd|pass|secret|token|api_?key|apikey|signature|sig|auth|authorization|credentials?))(\s*=\s*)('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|[^\s&;,'"]+)`)
)

// secretKey matches names (log attribute keys) whose value is a secret.
var secretKey = regexp.MustCompile(`(?i)(password|passwd|pwd|secret|token|api_?key|apikey|signature|authorization|credentials?)$`)

// Redact returns text — an error message, a log value, a setting's value — with every
// secret-bearing form in it masked, so that it is safe to print:
//
//   - URLs (scheme://...) as RedactURL shows them: the password (or a lone user name, which
//     may be a token) as xxxxx, and path, query and fragment as "/…";
//   - user:password@ without a scheme (host:port addresses, Go MySQL DSNs): user:xxxxx@;
//   - key=value pairs whose key names a secret (password, sslpassword, token, secret,
//     api_key, signature, ...), as in keyword DSNs and query strings: key=xxxxx.
//
// Everything else is kept. Every error and log line the command prints goes through it.
func Redact(text string) string {
	if text == "" {
		return ""
	}
	text = textURL.ReplaceAllStringFunc(text, func(u string) string {
		// Punctuation ending a sentence is not part of the URL.
		trimmed := strings.TrimRight(u, ".,;:)]}")
		return redactOne(trimmed) + u[len(trimmed):]
	})
	text = textUserinfo.ReplaceAllString(text, "${1}:xxxxx@")
	return textKeyword.ReplaceAllString(text, "${1}${2}xxxxx")
}

// SecretName reports whether name, a log attribute key or a parameter name, names a secret
// (password, token, api_key, ...): its value is then never printed.
func SecretName(name string) bool { return secretKey.MatchString(name) }

// redactKeywords masks the key=value pairs of secret keys in s (see Redact).
func redactKeywords(s string) string { return textKeyword.ReplaceAllString(s, "${1}${2}xxxxx") }
