package admin

import (
	"crypto/subtle"
	"net/http"
	"strings"
)

// access is what a request may do.
type access int

const (
	denied access = iota
	readOnly
	full
)

// bearer returns the request's bearer token ("" when none).
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return ""
	}
	return strings.TrimSpace(h[len(prefix):])
}

// equal compares a presented token with a configured one in constant time (for tokens of
// the same length; the length itself is not secret enough to matter).
func equal(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// accessOf returns what the request's token allows: the admin token everything, the read
// token reading; without a read token configured, reading is open to all.
func (s *Server) accessOf(r *http.Request) access {
	tok := bearer(r)
	switch {
	case tok != "" && equal(tok, s.cfg.Token):
		return full
	case tok != "" && equal(tok, s.cfg.ReadToken):
		return readOnly
	case tok != "":
		return denied // a wrong token is refused even where none is needed
	case s.cfg.ReadToken == "":
		return readOnly
	}
	return denied
}

// reads wraps a read endpoint: 401 without a valid token when a read token is configured.
func (s *Server) reads(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.accessOf(r) == denied {
			w.Header().Set("WWW-Authenticate", `Bearer realm="outbox"`)
			writeError(w, http.StatusUnauthorized, "a valid bearer token is required")
			return
		}
		h(w, r)
	}
}

// writes wraps a mutating endpoint: 401 without a valid token, 403 with the read-only one or
// when no admin token is configured (mutations are off then).
func (s *Server) writes(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch a := s.accessOf(r); {
		case s.cfg.Token == "":
			writeError(w, http.StatusForbidden, "mutations are disabled: the admin server has no admin token")
		case a == full:
			h(w, r)
		case a == readOnly && bearer(r) != "":
			writeError(w, http.StatusForbidden, "the read-only token cannot change anything")
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="outbox"`)
			writeError(w, http.StatusUnauthorized, "the admin bearer token is required")
		}
	}
}
