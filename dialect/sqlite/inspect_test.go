package sqlite_test

import (
	"testing"

	"github.com/outboxgo/outbox/dialect"
	"github.com/outboxgo/outbox/dialect/dialecttest"
)

func TestInspect(t *testing.T) {
	t.Parallel()
	dialecttest.RunInspect(t, func(t *testing.T) dialect.Store { return newStore(t) })
}
