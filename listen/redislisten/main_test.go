package redislisten_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/outboxgo/outbox/internal/testutil/service"
)

// TestMain checks that no goroutine outlives the tests.
func TestMain(m *testing.M) {
	service.SkipExamples("Example") // it uses Redis
	goleak.VerifyTestMain(m)
}
