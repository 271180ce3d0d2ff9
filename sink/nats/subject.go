package nats

import (
	"fmt"
	"strings"
	"sync"

	"github.com/outboxgo/outbox/sink"
)

// maxSubjectLen keeps the publish protocol line (subject, reply inbox, sizes) well under the
// server's default max_control_line of 4096 bytes; a longer line makes the server close the
// connection, failing every message in flight.
const maxSubjectLen = 3840

// checkSubject returns why s cannot be published to, or "" when it can. It follows the
// server's rules for publish subjects: dot-separated non-empty tokens, no whitespace or
// control characters, no wildcard tokens.
func checkSubject(s string) string {
	if s == "" {
		return "empty subject"
	}
	if len(s) > maxSubjectLen {
		return fmt.Sprintf("longer than %d bytes", maxSubjectLen)
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			c := s[i]
			if c <= ' ' || c == 0x7f {
				return "contains whitespace or a control character"
			}
			if c != '.' {
				continue
			}
		}
		switch s[start:i] {
		case "":
			return "has an empty token (leading, trailing or double dot)"
		case "*", ">":
			return "contains a wildcard token (* or >), which cannot be published to"
		}
		start = i + 1
	}
	return ""
}

// checkStreamSubject returns why s cannot be one of a stream's subjects, or "": a subject in
// which a * token stands for any one token and a final > token for one or more.
func checkStreamSubject(s string) string {
	tokens := strings.Split(s, ".")
	for i, tok := range tokens {
		switch {
		case tok == ">" && i != len(tokens)-1:
			return "has > before the last token"
		case tok == "*" || tok == ">":
			tokens[i] = "x" // a token of the same length: the rest are checkSubject's rules
		}
	}
	return checkSubject(strings.Join(tokens, "."))
}

// subjectCache maps topics to validated subjects. Topics are few and repeat, so this saves
// the concatenation and the check per message.
type subjectCache struct {
	prefix string
	mu     sync.RWMutex
	m      map[string]subjectEntry
}

type subjectEntry struct {
	subject string
	err     error
}

// maxCachedSubjects bounds the cache for relays that see unbounded topic names.
const maxCachedSubjects = 4096

func (c *subjectCache) get(topic string) (string, error) {
	c.mu.RLock()
	e, ok := c.m[topic]
	c.mu.RUnlock()
	if ok {
		return e.subject, e.err
	}
	e.subject = c.prefix + topic
	if reason := checkSubject(e.subject); reason != "" {
		e.err = sink.Permanent(fmt.Errorf("nats sink: topic %q: invalid NATS subject %q: %s", topic, e.subject, reason))
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]subjectEntry)
	}
	if len(c.m) < maxCachedSubjects {
		c.m[strings.Clone(topic)] = e
	}
	c.mu.Unlock()
	return e.subject, e.err
}
