package sqlite_test

import (
	"testing"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/dialecttest"
)

func TestPause(t *testing.T) {
	t.Parallel()
	dialecttest.RunPause(t, func(t *testing.T) dialect.Store { return newStore(t) })
}
