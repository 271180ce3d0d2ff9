package envelope

import (
	"encoding/json"
	"fmt"
)

// HeadersJSON encodes headers for a headers column: a JSON object, "{}" when there are none.
// The library's inserts (outbox.Enqueue, Store.Enqueue) and the dead letters the log sources
// write (relay/wal, relay/binlog) all encode headers with it.
//
// It has no error to return: encoding/json marshals every map[string]string (string keys,
// sorted; string values; invalid UTF-8 is written as U+FFFD), so a failure would be a bug in
// encoding/json itself. It panics then, rather than write "{}" and lose the headers without a
// word, or hand callers an error none of them could act on.
func HeadersJSON(h map[string]string) string {
	if len(h) == 0 {
		return "{}"
	}
	b, err := json.Marshal(h)
	if err != nil {
		panic(fmt.Sprintf("envelope: marshaling headers: %v", err))
	}
	return string(b)
}
