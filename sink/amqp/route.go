package amqp

import (
	"fmt"
	"strings"
	"sync"

	"github.com/outboxgo/outbox/sink"
)

// routingKeys maps topics to routing keys: the exact mapping, else prefix + topic. Topics
// are few and repeat, so results are cached.
type routingKeys struct {
	prefix string
	exact  map[string]string

	mu    sync.RWMutex
	cache map[string]routeEntry
}

type routeEntry struct {
	key string
	err error
}

// maxCachedKeys bounds the cache for relays that see unbounded topic names.
const maxCachedKeys = 4096

func (r *routingKeys) get(topic string) (string, error) {
	if key, ok := r.exact[topic]; ok {
		return key, nil // validated with the config
	}
	r.mu.RLock()
	e, ok := r.cache[topic]
	r.mu.RUnlock()
	if ok {
		return e.key, e.err
	}
	e.key = r.prefix + topic
	if len(e.key) > maxShortstr {
		e.err = sink.Permanent(fmt.Errorf("amqp sink: topic %.64q: routing key of %d bytes is longer than the AMQP limit of %d", topic, len(e.key), maxShortstr))
	}
	r.mu.Lock()
	if r.cache == nil {
		r.cache = make(map[string]routeEntry)
	}
	if len(r.cache) < maxCachedKeys {
		r.cache[strings.Clone(topic)] = e
	}
	r.mu.Unlock()
	return e.key, e.err
}
