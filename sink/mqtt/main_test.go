package mqtt_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no goroutine outlives the tests: every connection's reader, pinger
// and batch sender must be gone after Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
