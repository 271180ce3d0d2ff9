package mqtt

import (
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/outboxgo/outbox/sink"
)

// checkString returns why s cannot be sent as an MQTT UTF-8 string, or "". Beyond valid
// UTF-8 without U+0000 (which the protocol requires), it refuses control characters and
// noncharacters, which the specification allows a receiver to treat as malformed: Mosquitto
// then drops the connection, failing every other message in flight.
func checkString(s string) string {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			return "not valid UTF-8"
		case r < 0x20, r >= 0x7f && r <= 0x9f:
			return fmt.Sprintf("contains the control character %U", r)
		case r >= 0xfdd0 && r <= 0xfdef, r&0xfffe == 0xfffe:
			return fmt.Sprintf("contains the noncharacter %U", r)
		}
	}
	return ""
}

// checkTopicPart returns why s cannot be part of a topic name, or "".
func checkTopicPart(s string) string {
	if strings.ContainsAny(s, "+#") {
		return "contains a wildcard (+ or #), which cannot be published to"
	}
	return checkString(s)
}

// checkTopic returns why topic cannot be published to, or "".
func checkTopic(topic string) string {
	switch {
	case topic == "":
		return "empty"
	case len(topic) > maxString:
		return fmt.Sprintf("%d bytes, longer than the MQTT limit of %d", len(topic), maxString)
	case topic[0] == '$':
		return "topics starting with $ are reserved for the broker"
	}
	return checkTopicPart(topic)
}

// topicCache maps outbox topics to validated MQTT topics: prefix + topic with every "."
// replaced by sep. Topics are few and repeat, so this saves the work per message.
type topicCache struct {
	prefix string
	sep    string

	mu sync.RWMutex
	m  map[string]topicEntry
}

type topicEntry struct {
	topic string
	err   error
}

// maxCachedTopics bounds the cache for relays that see unbounded topic names.
const maxCachedTopics = 4096

// mqttTopic returns the MQTT topic of an outbox topic, uncached.
func (c *topicCache) mqttTopic(topic string) string {
	if c.sep != "." {
		topic = strings.ReplaceAll(topic, ".", c.sep)
	}
	return c.prefix + topic
}

func (c *topicCache) get(topic string) (string, error) {
	c.mu.RLock()
	e, ok := c.m[topic]
	c.mu.RUnlock()
	if ok {
		return e.topic, e.err
	}
	e.topic = c.mqttTopic(topic)
	if reason := checkTopic(e.topic); reason != "" {
		e.err = sink.Permanent(fmt.Errorf("mqtt sink: topic %.64q: invalid MQTT topic %.64q: %s", topic, e.topic, reason))
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
