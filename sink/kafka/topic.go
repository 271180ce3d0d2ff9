package kafka

import (
	"fmt"
	"strings"
	"sync"

	"github.com/outboxgo/outbox/sink"
)

// maxTopicLen is Kafka's limit on topic names.
const maxTopicLen = 249

// checkTopic returns why name is not a legal Kafka topic name, or "" when it is: 1 to 249
// characters of [a-zA-Z0-9._-], and neither "." nor "..".
func checkTopic(name string) string {
	switch name {
	case "":
		return "empty topic name"
	case ".", "..":
		return fmt.Sprintf("%q is not allowed as a topic name", name)
	}
	if len(name) > maxTopicLen {
		return fmt.Sprintf("longer than %d characters", maxTopicLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Sprintf("character %q not allowed (only a-z, A-Z, 0-9, '.', '_' and '-')", c)
		}
	}
	return ""
}

// topicCache maps outbox topics to validated Kafka topics. Topics are few and repeat, so
// this saves the concatenation and the check per message.
type topicCache struct {
	prefix string
	exact  map[string]string // read-only after New
	mu     sync.RWMutex
	m      map[string]topicEntry
}

type topicEntry struct {
	topic string
	err   error
}

// maxCachedTopics bounds the cache for relays that see unbounded topic names.
const maxCachedTopics = 4096

func (c *topicCache) get(topic string) (string, error) {
	c.mu.RLock()
	e, ok := c.m[topic]
	c.mu.RUnlock()
	if ok {
		return e.topic, e.err
	}
	if t, ok := c.exact[topic]; ok {
		e.topic = t // validated by New
	} else {
		e.topic = c.prefix + topic
		if reason := checkTopic(e.topic); reason != "" {
			e.err = sink.Permanent(fmt.Errorf("kafka sink: outbox topic %q: invalid Kafka topic %q: %s", topic, e.topic, reason))
		}
	}
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]topicEntry)
	}
	if len(c.m) < maxCachedTopics {
		c.m[strings.Clone(topic)] = e
	}
	c.mu.Unlock()
	return e.topic, e.err
}
