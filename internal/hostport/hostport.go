// Package hostport checks host:port addresses (Kafka brokers, the Redis server) without
// quoting them: a value that is not host:port may be a URL carrying a password.
package hostport

import (
	"net"
	"strconv"
	"strings"
)

// notShown ends the reasons for values that may hold a secret.
const notShown = " (the value is not shown: it may hold a password)"

// Check returns why s is not a host:port address, or "". The reason starts with what, which
// names the address ("a broker address"), and never quotes s. A scheme (redis://),
// credentials (user:password@), a path or query, whitespace, a missing host and a port
// outside 1 to 65535 are refused; with portOptional a host alone (kafka-1, [::1]) is
// accepted too, for clients that add a default port.
func Check(s, what string, portOptional bool) string {
	switch {
	case s == "":
		return what + " is empty: want host:port"
	case strings.Contains(s, "://"):
		return what + " must be host:port, without a scheme" + notShown
	case strings.Contains(s, "@"):
		return what + " must be host:port, without credentials before an @: set them in their own settings" + notShown
	case strings.ContainsAny(s, "/?#"):
		return what + " must be host:port, without a path or query" + notShown
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return what + " must be host:port, without whitespace or control characters"
	}
	if portOptional && !hasPort(s) {
		return ""
	}
	host, port, err := net.SplitHostPort(s)
	switch {
	case err != nil:
		return what + " must be host:port" + notShown
	case host == "":
		return what + " must be host:port: the host is missing"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
		return what + " must be host:port with a port from 1 to 65535"
	}
	return ""
}

// hasPort reports whether s, a host with or without a port, has one: any colon, except in a
// bracketed IPv6 address alone ([::1]). An unbracketed IPv6 address is taken as host:port
// and refused: write it in brackets.
func hasPort(s string) bool {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		return false
	}
	return strings.Contains(s, ":")
}
