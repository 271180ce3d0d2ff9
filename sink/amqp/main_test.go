package amqp_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no goroutine outlives the tests: every sink, session reader and
// sender must be gone after Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
