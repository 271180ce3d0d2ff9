package kafka_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves goroutines behind: every client the sink makes is
// closed with it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
