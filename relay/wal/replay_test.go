package wal_test

import (
	"testing"

	"github.com/outboxgo/outbox/internal/testutil/sourcetest"
	"github.com/outboxgo/outbox/relay/wal"
)

// TestReplaySeen: messages a polling relay published and retained, replayed while the source
// streams, are published by it again with their ids, in key order (sourcetest.ReplaySeen).
func TestReplaySeen(t *testing.T) {
	t.Parallel()
	e := setup(t, wal.ModeTable)
	sourcetest.ReplaySeen(t, e.scenarios(t), e.store, func(s *wal.Source) bool { return s.Stats().Streaming }, e.rows)
}
